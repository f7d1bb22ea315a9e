#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = eˣ
struct exp_op
{
    static constexpr const char* name = "exp"; ///< in error and anomaly messages
    /// eˣ, elementwise
    tensor forward(const tensor& x) const { return xt::exp(x); }
    /// dy/dx = y
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy * y;
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, -2, 2); }
};

/// eˣ elementwise.
[[nodiscard]] inline var exp(const var& x) { return apply(exp_op{}, x); }

} // namespace unfold
