#pragma once
#include "framework/op.hpp"

namespace unfold
{

/// y = 1 / (1 + e⁻ˣ)
struct sigmoid_op
{
    static constexpr const char* name = "sigmoid";
    // With e = exp(−|x|) ≤ 1: y = 1 / (1 + e) for x ≥ 0 and e / (1 + e) for x < 0, so nothing
    // overflows and x = ±1000 gives exactly 1 and 0.
    tensor forward(const tensor& x) const
    {
        const tensor e = xt::exp(-xt::abs(x));
        return xt::where(x >= real(0), real(1) / (real(1) + e), e / (real(1) + e));
    }
    // dy/dx = y (1 − y)
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy * y * (real(1) - y);
    }
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, -6, 6); }
};

[[nodiscard]] inline var sigmoid(const var& x) { return apply(sigmoid_op{}, x); }

} // namespace unfold
