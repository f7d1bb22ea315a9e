#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = max(x, 0)
struct relu_op
{
    static constexpr const char* name = "relu"; ///< in error and anomaly messages
    /// max(x, 0), elementwise
    tensor forward(const tensor& x) const { return xt::maximum(x, real(0)); }
    /// dy/dx = 1 for x > 0, else 0 (0 at the kink, as in PyTorch)
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += xt::where(x > real(0), gy, real(0));
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}).avoid(0); }
};

/// max(x, 0) elementwise.
[[nodiscard]] inline var relu(const var& x) { return apply(relu_op{}, x); }

} // namespace unfold
