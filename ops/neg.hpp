#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = −x
struct neg_op
{
    static constexpr const char* name = "neg"; ///< in error and anomaly messages
    /// −x
    tensor forward(const tensor& x) const { return -x; }
    /// dy/dx = −1
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) -= gy;
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}); }
};

/// −x.
[[nodiscard]] inline var neg(const var& x) { return apply(neg_op{}, x); }
/// −x: neg(x).
[[nodiscard]] inline var operator-(const var& x) { return neg(x); }

} // namespace unfold
