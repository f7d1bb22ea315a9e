#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = clamp(x / 6 + 1/2, 0, 1): 0 for x ≤ −3, 1 for x ≥ 3 (PyTorch's Hardsigmoid)
struct hard_sigmoid_op
{
    static constexpr const char* name = "hard_sigmoid"; ///< in error and anomaly messages
    /// clamp(x / 6 + 1/2, 0, 1), elementwise
    tensor forward(const tensor& x) const
    {
        return xt::clip(x / real(6) + real(0.5), real(0), real(1));
    }
    /// dy/dx = 1/6 for −3 < x < 3, else 0 (0 at the kinks, as in PyTorch)
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += xt::where(x > real(-3) && x < real(3), gy / real(6), real(0));
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec().input({4, 5}, -5, 5).avoid(-3).avoid(3);
    }
};

/// clamp(x / 6 + 1/2, 0, 1) elementwise (PyTorch's Hardsigmoid).
[[nodiscard]] inline var hard_sigmoid(const var& x) { return apply(hard_sigmoid_op{}, x); }

} // namespace unfold
