#pragma once
#include <unfold/framework/op.hpp>
#include <unfold/ops/scale_shift.hpp>

namespace unfold
{

/// y = x^p for a scalar exponent p. A non-integer p needs x ≥ 0 (NaN otherwise, as in PyTorch).
struct pow_op
{
    static constexpr const char* name = "pow"; ///< in error and anomaly messages
    real exponent = 1;                         ///< p

    /// x^exponent, elementwise
    tensor forward(const tensor& x) const { return xt::pow(x, exponent); }
    /// dy/dx = p · x^(p−1); zero for p = 0 (PyTorch's convention, also at x = 0)
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        if (exponent != 0)
            xt::noalias(gx) += gy * exponent * xt::pow(x, exponent - 1);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto with = [](real p) {
            return [p](const std::vector<var>& x) { return apply(pow_op{p}, x[0]); };
        };
        return gradcheck_spec("x^2")
            .input({3, 4})
            .build(with(2))
            .next("x^3")
            .input({3, 4}, -2, 2)
            .build(with(3))
            .next("x^0.5")
            .input({3, 4}, 0.1, 2)
            .build(with(0.5))
            .next("x^-1")
            .input({3, 4}, 0.5, 2)
            .build(with(-1))
            .next("x^-1.5")
            .input({3, 4}, 0.5, 2)
            .build(with(-1.5))
            .next("x^0")
            .input({3, 4})
            .build(with(0));
    }
};

/// x^exponent elementwise; a non-integer exponent needs x ≥ 0 (NaN otherwise).
[[nodiscard]] inline var pow(const var& x, real exponent) { return apply(pow_op{exponent}, x); }
/// s / x = s · x⁻¹ (two nodes: pow and scale_shift).
[[nodiscard]] inline var operator/(real s, const var& x) { return scale_shift(pow(x, -1), s, 0); }

} // namespace unfold
