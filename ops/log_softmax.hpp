#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x − log Σ_j exp(x_j) over the last axis (every leading axis is a row), computed as
/// y = (x − m) − log Σ_j exp(x_j − m) with m the row maximum, so ±1000 logits stay finite.
struct log_softmax_op
{
    static constexpr const char* name = "log_softmax"; ///< in error and anomaly messages
    /// log softmax over the last axis; throws for a rank-0 x
    tensor forward(const tensor& x) const
    {
        UNFOLD_CHECK(x.dimension() >= 1, "log_softmax: needs at least one axis, got shape {}",
                     shape_str(x.shape()));
        tensor y(x.shape());
        const auto [rows, cols] = as_matrix(x.shape());
        for (std::size_t r = 0; r < rows; ++r)
        {
            const real* in = x.data() + r * cols;
            real* out = y.data() + r * cols;
            const real m = *std::max_element(in, in + cols);
            double s = 0;
            for (std::size_t j = 0; j < cols; ++j)
                s += std::exp(double(in[j] - m));
            const real log_s = real(std::log(s));
            for (std::size_t j = 0; j < cols; ++j)
                out[j] = (in[j] - m) - log_s;
        }
        return y;
    }
    /// dx = gy − softmax(x) · Σ_j gy_j, softmax(x) = exp(y), per row
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        const auto [rows, cols] = as_matrix(y.shape());
        for (std::size_t r = 0; r < rows; ++r)
        {
            const real* yr = y.data() + r * cols;
            const real* gyr = gy.data() + r * cols;
            real* gxr = gx.data() + r * cols;
            const real total = std::accumulate(gyr, gyr + cols, real(0));
            for (std::size_t j = 0; j < cols; ++j)
                gxr[j] += gyr[j] - std::exp(yr[j]) * total;
        }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("matrix")
            .input({3, 5}, -3, 3)
            .next("sequence (T, B, C)")
            .input({2, 3, 4}, -3, 3)
            .next("vector")
            .input({4}, -3, 3)
            .next("large logits")
            .input({2, 3}, 50, 60);
    }
};

/// log(softmax(x)) over the last axis of x, for any rank ≥ 1; numerically stable.
[[nodiscard]] inline var log_softmax(const var& x) { return apply(log_softmax_op{}, x); }

} // namespace unfold
