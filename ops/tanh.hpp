#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = tanh(x)
struct tanh_op
{
    static constexpr const char* name = "tanh"; ///< in error and anomaly messages
    /// Its backward reads y alone (ops/sliced.hpp skips cutting out the input).
    static constexpr bool backward_reads_input = false;
    /// tanh(x), elementwise
    tensor forward(const tensor& x) const
    {
        tensor y = tensor::from_shape(x.shape());
        transform_simd(x.data(), y.data(), x.size(), [](auto v) { return xsimd::tanh(v); });
        return y;
    }
    /// dy/dx = 1 − y²
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        const real *py = y.data(), *pg = gy.data();
        real* px = gx.data();
        for (std::size_t i = 0, n = gx.size(); i < n; ++i)
            px[i] += pg[i] * (real(1) - py[i] * py[i]);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, -2, 2); }
};

/// tanh(x) elementwise.
[[nodiscard]] inline var tanh(const var& x) { return apply(tanh_op{}, x); }

} // namespace unfold
