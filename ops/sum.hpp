#pragma once
#include <unfold/framework/axis.hpp>
#include <unfold/framework/op.hpp>
#include <unfold/ops/scale_shift.hpp>

namespace unfold
{

/// y = Σ x over every element (a rank-0 result) or along one axis (dropped, or kept as size 1)
struct sum_op
{
    static constexpr const char* name = "sum"; ///< in error and anomaly messages
    bool all = true;         ///< sum every element into a rank-0 result (axis, keepdims unused)
    std::ptrdiff_t axis = 0; ///< the summed axis when not `all`; negative counts from the end
    bool keepdims = false;   ///< keep the summed axis with size 1 instead of dropping it

    /// Σ x over every element or along `axis`; throws if the axis is out of range
    tensor forward(const tensor& x) const
    {
        if (all)
        {
            tensor y = zeros({});
            real s = 0;
            for (std::size_t j = 0; j < x.size(); ++j)
                s += x.data()[j];
            y.data()[0] = s;
            return y;
        }
        const std::size_t a = normalize_axis(name, axis, x.shape());
        const auto [outer, n, inner] = blocks_around(x.shape(), a);
        shape_type out = x.shape();
        if (keepdims)
            out[a] = 1;
        else
            out.erase(out.begin() + static_cast<std::ptrdiff_t>(a));
        tensor y = zeros(out);
        const real* px = x.data();
        real* py = y.data();
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t k = 0; k < n; ++k)
                for (std::size_t i = 0; i < inner; ++i)
                    py[o * inner + i] += px[(o * n + k) * inner + i];
        return y;
    }
    /// dx = gy broadcast back along the summed axis (every element of x gets its sum's gradient)
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        real* pg = gx.data();
        const real* pgy = gy.data();
        if (all)
        {
            for (std::size_t j = 0; j < gx.size(); ++j)
                pg[j] += pgy[0];
            return;
        }
        const std::size_t a = normalize_axis(name, axis, x.shape());
        const auto [outer, n, inner] = blocks_around(x.shape(), a);
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t k = 0; k < n; ++k)
                for (std::size_t i = 0; i < inner; ++i)
                    pg[(o * n + k) * inner + i] += pgy[o * inner + i];
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto along = [](std::ptrdiff_t axis, bool keepdims) {
            return [=](const std::vector<var>& x) {
                return apply(sum_op{false, axis, keepdims}, x[0]);
            };
        };
        return gradcheck_spec("all, matrix")
            .input({3, 4})
            .next("all, sequence")
            .input({2, 3, 4})
            .next("axis 0")
            .input({3, 4})
            .build(along(0, false))
            .next("axis -1, keepdims")
            .input({3, 4})
            .build(along(-1, true))
            .next("middle axis of (2, 3, 4)")
            .input({2, 3, 4})
            .build(along(1, false))
            .next("axis -3, keepdims")
            .input({2, 3, 4})
            .build(along(-3, true))
            .next("vector")
            .input({5})
            .build(along(0, false));
    }
};

/// Σ of every element of x: a rank-0 tensor (shape {}, read it with var::item()).
[[nodiscard]] inline var sum(const var& x) { return apply(sum_op{}, x); }
/// Σ of x along `axis` (negative counts from the end); the axis is dropped unless keepdims, which
/// keeps it with size 1.
[[nodiscard]] inline var sum(const var& x, std::ptrdiff_t axis, bool keepdims = false)
{
    return apply(sum_op{false, axis, keepdims}, x);
}
/// Σ over axis 0: (B, F) → (F,), e.g. a bias gradient over a batch.
[[nodiscard]] inline var sum_rows(const var& x) { return sum(x, 0); }
/// Σ over the last axis: (B, F) → (B,).
[[nodiscard]] inline var sum_cols(const var& x) { return sum(x, -1); }

// The mean composes: Σx · (1/n), so it needs no op (and no backward) of its own.

/// The mean of every element of x: a rank-0 tensor (shape {}, read it with var::item()).
[[nodiscard]] inline var mean(const var& x)
{
    UNFOLD_CHECK(x.size() > 0, "mean: cannot average the zero elements of shape {}",
                 shape_str(x.shape()));
    return sum(x) * (real(1) / real(x.size()));
}
/// The mean of x along `axis` (negative counts from the end); the axis is dropped unless
/// keepdims, which keeps it with size 1.
[[nodiscard]] inline var mean(const var& x, std::ptrdiff_t axis, bool keepdims = false)
{
    const std::size_t n = x.shape()[normalize_axis("mean", axis, x.shape())];
    UNFOLD_CHECK(n > 0, "mean: cannot average over axis {} of shape {}: it has size 0", axis,
                 shape_str(x.shape()));
    return sum(x, axis, keepdims) * (real(1) / real(n));
}

} // namespace unfold
