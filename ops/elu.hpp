#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x for x > 0, α (eˣ − 1) otherwise
struct elu_op
{
    static constexpr const char* name = "elu"; ///< in error and anomaly messages
    real alpha = 1;                            ///< α: y tends to −α as x → −∞

    // expm1 of min(x, 0): accurate near 0 and no overflow in the branch that is discarded
    /// x for x > 0, α (eˣ − 1) otherwise
    tensor forward(const tensor& x) const
    {
        return xt::where(x > real(0), x, alpha * xt::expm1(xt::minimum(x, real(0))));
    }
    /// dy/dx = 1 for x > 0, α eˣ = y + α otherwise
    void backward(const tensor& x, const tensor& y, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += xt::where(x > real(0), gy, gy * (y + alpha));
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto with = [](real alpha) {
            return [alpha](const std::vector<var>& x) { return apply(elu_op{alpha}, x[0]); };
        };
        return gradcheck_spec("alpha 1")
            .input({3, 4}, -3, 2)
            .avoid(0)
            .build(with(1))
            .next("alpha 0.5")
            .input({3, 4}, -3, 2)
            .avoid(0)
            .build(with(0.5));
    }
};

/// x for x > 0, alpha · (eˣ − 1) otherwise (PyTorch's ELU).
[[nodiscard]] inline var elu(const var& x, real alpha = 1) { return apply(elu_op{alpha}, x); }

} // namespace unfold
