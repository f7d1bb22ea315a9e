#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = ln x. Like PyTorch, log(0) = −inf and log(x < 0) = NaN rather than an error.
struct log_op
{
    static constexpr const char* name = "log"; ///< in error and anomaly messages
    /// ln x, elementwise
    tensor forward(const tensor& x) const { return xt::log(x); }
    /// dy/dx = 1 / x
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy / x;
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, 0.1, 3); }
};

/// ln x elementwise: −inf at 0, NaN below.
[[nodiscard]] inline var log(const var& x) { return apply(log_op{}, x); }

} // namespace unfold
