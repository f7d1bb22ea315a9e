#pragma once
#include <unfold/framework/op.hpp>
#include <unfold/framework/random.hpp>

namespace unfold
{

/// y = x ⊙ m / (1 − p), m_i ~ Bernoulli(1 − p) drawn from `rng` in forward (inverted dropout:
/// the expected value of y is x, so evaluation simply skips the call). The scaled mask is kept in
/// the op for backward; `rng` is used during forward only and cleared after.
struct dropout_op
{
    static constexpr const char* name = "dropout"; ///< in error and anomaly messages
    real p = 0;               ///< the probability of zeroing an element, in [0, 1)
    generator* rng = nullptr; ///< draws the mask in forward (needed when p > 0); null after
    tensor mask;              ///< m / (1 − p), drawn by forward; unused when p = 0 (identity)

    /// x ⊙ mask with a new mask from `rng` (then cleared); throws unless 0 ≤ p < 1
    tensor forward(const tensor& x)
    {
        UNFOLD_CHECK(p >= 0 && p < 1, "dropout: p = {} is outside [0, 1) (input of shape {})", p,
                     shape_str(x.shape()));
        if (p == 0)
            return x;
        UNFOLD_ASSERT(rng != nullptr);
        mask = rng->bernoulli(x.shape(), real(1) - p);
        mask *= real(1) / (real(1) - p);
        rng = nullptr;
        return x * mask;
    }
    /// dx = gy ⊙ m / (1 − p)
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        if (p == 0)
            xt::noalias(gx) += gy;
        else
            xt::noalias(gx) += gy * mask;
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto with = [](real p) {
            return [p](const std::vector<var>& x) {
                generator g(2024);
                return apply(dropout_op{p, &g, {}}, x[0]);
            };
        };
        return gradcheck_spec("p = 0.3")
            .input({4, 5})
            .build(with(real(0.3)))
            .next("sequence (T, B, F), p = 0.5")
            .input({2, 3, 4})
            .build(with(real(0.5)))
            .next("p = 0 (identity)")
            .input({3, 4})
            .build(with(real(0)));
    }
};

/// Inverted dropout: zeroes each element of x with probability p, drawn from `rng`, and scales the
/// kept ones by 1/(1 − p). p must be in [0, 1); p = 0 returns x unchanged and draws nothing.
/// Dropout does not know about training or evaluation (nor about no_grad_guard): the caller
/// applies it while training and leaves the call out to evaluate.
[[nodiscard]] inline var dropout(const var& x, real p, generator& rng)
{
    return apply(dropout_op{p, &rng, {}}, x);
}

} // namespace unfold
