#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = (1/n) Σ_i (p_i − t_i)², the mean over all n elements; p and t must have the same shape
struct mse_op
{
    static constexpr const char* name = "mse"; ///< in error and anomaly messages
    /// The rank-0 mean of (p − t)²; throws unless the shapes are equal and not empty
    tensor forward(const tensor& prediction, const tensor& target) const
    {
        UNFOLD_CHECK(prediction.shape() == target.shape(),
                     "mse: prediction of shape {} and target of shape {} differ (mse does not "
                     "broadcast)",
                     shape_str(prediction.shape()), shape_str(target.shape()));
        UNFOLD_CHECK(prediction.size() > 0, "mse: the inputs of shape {} have no elements",
                     shape_str(prediction.shape()));
        double total = 0;
        for (std::size_t i = 0; i < prediction.size(); ++i)
        {
            const double d = double(prediction.data()[i]) - double(target.data()[i]);
            total += d * d;
        }
        return full({}, real(total / double(prediction.size())));
    }
    /// dp = gy · 2 (p − t) / n, dt = −dp
    void backward(const tensor& prediction, const tensor& target, const tensor&, const tensor& gy,
                  tensor& gp, tensor& gt) const
    {
        const real scale = real(2) * gy.data()[0] / real(prediction.size());
        xt::noalias(gp) += scale * (prediction - target);
        xt::noalias(gt) -= scale * (prediction - target);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("matrix")
            .input({3, 4})
            .input({3, 4})
            .next("sequence (T, B, F)")
            .input({2, 3, 2})
            .input({2, 3, 2})
            .next("mse(x, x)")
            .input({2, 3})
            .build([](const std::vector<var>& x) { return apply(mse_op{}, x[0], x[0]); });
    }
};

/// The mean squared error between `prediction` and `target` (same shape), as a rank-0 loss.
[[nodiscard]] inline var mse(const var& prediction, const var& target)
{
    return apply(mse_op{}, prediction, target);
}

} // namespace unfold
