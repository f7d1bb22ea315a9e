#pragma once
#include <cmath>
#include <utility>
#include <vector>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = γ ⊙ x̂ + β with x̂ = (x − μ) / √(σ² + ε), μ and σ² the mean and (biased) variance of each
/// row over the last axis, as PyTorch's layer_norm over the last dimension with its gain and bias.
/// With G groups, each of the G equal blocks of a row is normalised on its own (the gate blocks
/// of a fused pre-activation, as a layer-normalised LSTM needs); γ and β still cover the whole row.
/// Backward recomputes x̂ from x instead of keeping it: the op stores nothing beyond its inputs.
struct layer_norm_op
{
    static constexpr const char* name = "layer_norm";  ///< in error and anomaly messages
    static constexpr bool skips_unneeded_grads = true; ///< see Note [Unneeded gradients]
    real eps = real(1e-5);                             ///< ε, added to the variance (PyTorch's)
    std::size_t groups = 1; ///< G, the blocks of the last axis normalised separately

    /// γ ⊙ x̂ + β per row; throws unless γ and β are (N) for x of shape (..., N)
    tensor forward(const tensor& x, const tensor& gain, const tensor& bias) const
    {
        UNFOLD_CHECK(x.dimension() >= 1 && gain.dimension() == 1 && bias.dimension() == 1 &&
                         gain.size() == x.shape().back() && bias.size() == gain.size(),
                     "layer_norm: gain of shape {} and bias of shape {} for x of shape {} (needs "
                     "(..., N) with gain and bias (N))",
                     shape_str(gain.shape()), shape_str(bias.shape()), shape_str(x.shape()));
        UNFOLD_CHECK(x.shape().back() > 0, "layer_norm: the last axis of x {} is empty",
                     shape_str(x.shape()));
        UNFOLD_CHECK(groups >= 1 && x.shape().back() % groups == 0,
                     "layer_norm: {} groups do not divide the last axis of x {}", groups,
                     shape_str(x.shape()));
        tensor y = tensor::from_shape(x.shape());
        const auto [rows, cols] = as_matrix(x.shape());
        const std::size_t width = cols / groups;
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t k = 0; k < cols; k += width)
            {
                const real* in = x.data() + r * cols + k;
                real* out = y.data() + r * cols + k;
                const real *gk = gain.data() + k, *bk = bias.data() + k;
                const auto [mean, rstd] = moments(in, width);
                for (std::size_t j = 0; j < width; ++j)
                    out[j] = gk[j] * real((in[j] - mean) * rstd) + bk[j];
            }
        return y;
    }
    /// dβ = Σ_rows gy, dγ = Σ_rows gy ⊙ x̂, and with g = gy ⊙ γ per row:
    /// dx = (g − mean(g) − x̂ · mean(g ⊙ x̂)) / √(σ² + ε)
    void backward(const tensor& x, const tensor& gain, const tensor&, const tensor&,
                  const tensor& gy, tensor& gx, tensor& ggain, tensor& gbias) const
    {
        const auto [rows, cols] = as_matrix(x.shape());
        const std::size_t width = cols / groups;
        std::vector<double> normed(width), g(width);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t k = 0; k < cols; k += width)
            {
                const std::size_t at = r * cols + k;
                const real* in = x.data() + at;
                const real* gyr = gy.data() + at;
                const auto [mean, rstd] = moments(in, width);
                double mean_g = 0, mean_g_normed = 0;
                for (std::size_t j = 0; j < width; ++j)
                {
                    normed[j] = (double(in[j]) - mean) * rstd;
                    g[j] = double(gyr[j]) * double(gain.data()[k + j]);
                    mean_g += g[j];
                    mean_g_normed += g[j] * normed[j];
                }
                mean_g /= double(width);
                mean_g_normed /= double(width);
                if (gx.size())
                    for (std::size_t j = 0; j < width; ++j)
                        gx.data()[at + j] +=
                            real((g[j] - mean_g - normed[j] * mean_g_normed) * rstd);
                if (ggain.size())
                    for (std::size_t j = 0; j < width; ++j)
                        ggain.data()[k + j] += real(double(gyr[j]) * normed[j]);
                if (gbias.size())
                    for (std::size_t j = 0; j < width; ++j)
                        gbias.data()[k + j] += gyr[j];
            }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto with = [](real eps, std::size_t groups) {
            return [eps, groups](const std::vector<var>& v) {
                return apply(layer_norm_op{eps, groups}, v[0], v[1], v[2]);
            };
        };
        return gradcheck_spec("matrix")
            .input({3, 5}, -2, 2)
            .input({5}, 0.5, 1.5)
            .input({5})
            .build(with(real(1e-5), 1))
            .next("sequence (T, B, N)")
            .input({2, 3, 4}, -2, 2)
            .input({4}, 0.5, 1.5)
            .input({4})
            .build(with(real(1e-5), 1))
            .next("eps 0.1, rows of small spread")
            .input({2, 6}, 0.9, 1.1)
            .input({6}, -1, 1)
            .input({6})
            .build(with(real(0.1), 1))
            .next("4 groups of 3, sequence (T, B, 4·3)")
            .input({2, 2, 12}, -2, 2)
            .input({12}, 0.5, 1.5)
            .input({12})
            .build(with(real(1e-5), 4));
    }

private:
    /// The mean and 1 / √(variance + ε) of n values, accumulated in double.
    std::pair<double, double> moments(const real* v, std::size_t n) const
    {
        double sum = 0;
        for (std::size_t j = 0; j < n; ++j)
            sum += v[j];
        const double mean = sum / double(n);
        double squares = 0;
        for (std::size_t j = 0; j < n; ++j)
            squares += (double(v[j]) - mean) * (double(v[j]) - mean);
        return {mean, 1 / std::sqrt(squares / double(n) + double(eps))};
    }
};

/// Layer normalisation of x (..., N) over its last axis with gain γ (N) and bias β (N); with
/// `groups` G, over each of the G blocks of N / G values of a row separately.
[[nodiscard]] inline var layer_norm(const var& x, const var& gain, const var& bias,
                                    real eps = real(1e-5), std::size_t groups = 1)
{
    return apply(layer_norm_op{eps, groups}, x, gain, bias);
}

} // namespace unfold
