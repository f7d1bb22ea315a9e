#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = exp(x − m) / Σ_j exp(x_j − m) over the last axis (every leading axis is a row), m the row
/// maximum so ±1000 scores stay finite. With a mask (same shape as x, 1 = keep, 0 = masked out),
/// masked positions get exactly 0 and the row is normalised over the kept ones: attention over a
/// padded source.
struct softmax_op
{
    static constexpr const char* name = "softmax"; ///< in error and anomaly messages
    /// Empty (size 0) for no mask; else x's shape, every element 0 or 1.
    tensor mask = detail::unallocated_tensor();

    /// softmax over the last axis of x; throws for a rank-0 x, a mask of another shape or with
    /// values other than 0 and 1, and a row whose every position is masked out
    tensor forward(const tensor& x) const
    {
        UNFOLD_CHECK(x.dimension() >= 1, "softmax: needs at least one axis, got shape {}",
                     shape_str(x.shape()));
        const bool masked = mask.size() > 0;
        UNFOLD_CHECK(!masked || mask.shape() == x.shape(),
                     "softmax: the mask has shape {} but the scores have shape {}",
                     shape_str(mask.shape()), shape_str(x.shape()));
        tensor y(x.shape());
        const auto [rows, cols] = as_matrix(x.shape());
        for (std::size_t r = 0; r < rows; ++r)
        {
            const real* in = x.data() + r * cols;
            const real* keep = masked ? mask.data() + r * cols : nullptr;
            real* out = y.data() + r * cols;
            real m = -std::numeric_limits<real>::infinity();
            for (std::size_t j = 0; j < cols; ++j)
            {
                UNFOLD_CHECK(!keep || keep[j] == 0 || keep[j] == 1,
                             "softmax: the mask must hold 0 (masked out) or 1 (kept), found {}",
                             keep ? keep[j] : real(0));
                if (!keep || keep[j] != 0)
                    m = std::max(m, in[j]);
            }
            UNFOLD_CHECK(m > -std::numeric_limits<real>::infinity(),
                         "softmax: row {} of the mask (shape {}) masks out every position; "
                         "attention needs at least one",
                         r, shape_str(mask.shape()));
            double s = 0;
            for (std::size_t j = 0; j < cols; ++j)
                s += (!keep || keep[j] != 0) ? std::exp(double(in[j] - m)) : 0.0;
            for (std::size_t j = 0; j < cols; ++j)
                out[j] = (!keep || keep[j] != 0) ? real(std::exp(double(in[j] - m)) / s) : 0;
        }
        return y;
    }
    /// dx = y ⊙ (gy − Σ_j gy_j y_j), per row (0 at masked positions, where y is 0)
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        const auto [rows, cols] = as_matrix(y.shape());
        for (std::size_t r = 0; r < rows; ++r)
        {
            const real* yr = y.data() + r * cols;
            const real* gyr = gy.data() + r * cols;
            real* gxr = gx.data() + r * cols;
            real dot = 0;
            for (std::size_t j = 0; j < cols; ++j)
                dot += gyr[j] * yr[j];
            for (std::size_t j = 0; j < cols; ++j)
                gxr[j] += yr[j] * (gyr[j] - dot);
        }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto masked_by = [](tensor mask) {
            return [mask](const std::vector<var>& x) { return apply(softmax_op{mask}, x[0]); };
        };
        return gradcheck_spec("matrix")
            .input({3, 5}, -3, 3)
            .next("sequence (T, B, C)")
            .input({2, 3, 4}, -3, 3)
            .next("vector")
            .input({4}, -3, 3)
            .next("large scores")
            .input({2, 3}, 50, 60)
            .next("masked: padded positions of each row")
            .input({3, 4}, -3, 3)
            .build(masked_by(tensor{{1, 1, 1, 0}, {1, 0, 1, 1}, {1, 0, 0, 0}}));
    }
};

/// softmax over the last axis of x, for any rank ≥ 1; numerically stable.
[[nodiscard]] inline var softmax(const var& x) { return apply(softmax_op{}, x); }

/// softmax over the last axis of x where `mask` is 1, exactly 0 where it is 0 (padded positions);
/// mask has x's shape. Every row must keep at least one position.
[[nodiscard]] inline var masked_softmax(const var& x, tensor mask)
{
    return apply(softmax_op{std::move(mask)}, x);
}

} // namespace unfold
