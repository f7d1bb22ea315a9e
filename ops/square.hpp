#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x²
struct square_op
{
    static constexpr const char* name = "square"; ///< in error and anomaly messages
    /// x², elementwise
    tensor forward(const tensor& x) const { return x * x; }
    /// dy/dx = 2x
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += real(2) * gy * x;
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, -2, 2); }
};

/// x² elementwise.
[[nodiscard]] inline var square(const var& x) { return apply(square_op{}, x); }

} // namespace unfold
