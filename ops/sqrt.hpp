#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = √x. Like PyTorch, sqrt(x < 0) = NaN rather than an error.
struct sqrt_op
{
    static constexpr const char* name = "sqrt"; ///< in error and anomaly messages
    /// √x, elementwise
    tensor forward(const tensor& x) const { return xt::sqrt(x); }
    /// dy/dx = 1 / (2y)
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy / (real(2) * y);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, 0.1, 3); }
};

/// √x elementwise: NaN for x < 0.
[[nodiscard]] inline var sqrt(const var& x) { return apply(sqrt_op{}, x); }

} // namespace unfold
