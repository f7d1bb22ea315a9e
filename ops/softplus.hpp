#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = ln(1 + e^(βx)) / β, and y = x where βx > threshold (PyTorch's Softplus)
struct softplus_op
{
    static constexpr const char* name = "softplus"; ///< in error and anomaly messages
    real beta = 1;                                  ///< β: larger is closer to relu
    real threshold = 20;                            ///< y = x where βx exceeds it

    // log1p of exp(min(βx, threshold)): no overflow in the discarded branch, exact for βx ≪ 0
    /// ln(1 + e^(βx)) / β, and x where βx > threshold
    tensor forward(const tensor& x) const
    {
        const tensor bx = beta * x;
        return xt::where(bx > threshold, x, xt::log1p(xt::exp(xt::minimum(bx, threshold))) / beta);
    }
    /// dy/dx = σ(βx) = z / (1 + z) with z = e^(βx), and 1 where βx > threshold
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        const tensor bx = beta * x;
        const tensor z = xt::exp(xt::minimum(bx, threshold));
        xt::noalias(gx) += xt::where(bx > threshold, gy, gy * z / (real(1) + z));
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("default")
            .input({3, 4}, -5, 5)
            .next("beta 2, threshold 1 (both branches)")
            .input({4, 5}, -2, 2)
            .avoid(0.5)
            .build([](const std::vector<var>& x) {
                return apply(softplus_op{2, 1}, x[0]);
            });
    }
};

/// PyTorch's softplus(x, beta, threshold).
[[nodiscard]] inline var softplus(const var& x, real beta = 1, real threshold = 20)
{
    return apply(softplus_op{beta, threshold}, x);
}

} // namespace unfold
