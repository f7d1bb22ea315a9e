#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = 1 / (1 + e⁻ˣ)
struct sigmoid_op
{
    static constexpr const char* name = "sigmoid"; ///< in error and anomaly messages
    /// Its backward reads y alone (ops/sliced.hpp skips cutting out the input).
    static constexpr bool backward_reads_input = false;
    // With e = exp(−|x|) ≤ 1: y = 1 / (1 + e) for x ≥ 0 and e / (1 + e) for x < 0, so nothing
    // overflows and x = ±1000 gives exactly 1 and 0.
    /// 1 / (1 + e⁻ˣ), elementwise
    tensor forward(const tensor& x) const
    {
        tensor y = tensor::from_shape(x.shape());
        transform_simd(x.data(), y.data(), x.size(), [](auto v) {
            using batch = decltype(v);
            const batch one(real(1));
            const batch e = xsimd::exp(-xsimd::abs(v));
            const batch r = one / (one + e);
            return xsimd::select(v >= batch(real(0)), r, e * r);
        });
        return y;
    }
    /// dy/dx = y (1 − y)
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        const real *py = y.data(), *pg = gy.data();
        real* px = gx.data();
        for (std::size_t i = 0, n = gx.size(); i < n; ++i)
            px[i] += pg[i] * py[i] * (real(1) - py[i]);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, -6, 6); }
};

/// 1 / (1 + e⁻ˣ) elementwise, without overflow for any x.
[[nodiscard]] inline var sigmoid(const var& x) { return apply(sigmoid_op{}, x); }

} // namespace unfold
