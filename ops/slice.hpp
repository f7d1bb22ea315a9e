#pragma once
#include <algorithm>

#include <unfold/framework/axis.hpp>
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x[..., begin:end, ...] along one axis (a half-open range), e.g. one gate block of a fused
/// (batch, 4H) pre-activation. Forward and backward move contiguous runs of (end − begin) · inner
/// elements.
struct slice_op
{
    static constexpr const char* name = "slice";  ///< in error and anomaly messages
    static constexpr unsigned backward_reads = 0; ///< no values (Note [Recomputation])
    std::ptrdiff_t axis = 0;                      ///< the sliced axis; negative counts from the end
    std::ptrdiff_t begin = 0;                     ///< the first index kept
    std::ptrdiff_t end = 0;                       ///< one past the last index kept

    /// x[..., begin:end, ...] along `axis`; throws unless 0 ≤ begin ≤ end ≤ its size
    tensor forward(const tensor& x) const
    {
        const std::size_t a = normalize_axis(name, axis, x.shape());
        const auto n = static_cast<std::ptrdiff_t>(x.shape()[a]);
        UNFOLD_CHECK(0 <= begin && begin <= end && end <= n,
                     "slice: range [{}, {}) is out of bounds for axis {} of shape {} (needs 0 <= "
                     "begin <= end <= {})",
                     begin, end, axis, shape_str(x.shape()), n);
        shape_type out = x.shape();
        out[a] = static_cast<std::size_t>(end - begin);
        tensor y(out);
        const auto [outer, size, inner] = blocks_around(x.shape(), a);
        const std::size_t run = out[a] * inner;
        const std::size_t from = static_cast<std::size_t>(begin) * inner;
        for (std::size_t o = 0; o < outer; ++o)
        {
            const real* src = x.data() + o * size * inner + from;
            std::copy(src, src + run, y.data() + o * run);
        }
        return y;
    }
    /// dx[..., begin:end, ...] += gy; zero elsewhere. Reads no values (gx has x's shape).
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        const std::size_t a = normalize_axis(name, axis, gx.shape());
        const auto [outer, size, inner] = blocks_around(gx.shape(), a);
        const std::size_t run = static_cast<std::size_t>(end - begin) * inner;
        const std::size_t from = static_cast<std::size_t>(begin) * inner;
        for (std::size_t o = 0; o < outer; ++o)
        {
            real* dst = gx.data() + o * size * inner + from;
            const real* src = gy.data() + o * run;
            for (std::size_t j = 0; j < run; ++j)
                dst[j] += src[j];
        }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto range = [](std::ptrdiff_t axis, std::ptrdiff_t b, std::ptrdiff_t e) {
            return [=](const std::vector<var>& x) { return apply(slice_op{axis, b, e}, x[0]); };
        };
        return gradcheck_spec("gate block, last axis")
            .input({3, 8})
            .build(range(-1, 2, 6))
            .next("rows")
            .input({4, 3})
            .build(range(0, 1, 3))
            .next("middle axis of (2, 5, 3)")
            .input({2, 5, 3})
            .build(range(1, 3, 5))
            .next("time steps of (4, 2, 3)")
            .input({4, 2, 3})
            .build(range(-3, 0, 2))
            .next("whole vector")
            .input({5})
            .build(range(0, 0, 5));
    }
};

/// x[..., begin:end, ...] along `axis` (negative counts from the end), 0 <= begin <= end <= size.
[[nodiscard]] inline var slice(const var& x, std::ptrdiff_t axis, std::ptrdiff_t begin,
                               std::ptrdiff_t end)
{
    return apply(slice_op{axis, begin, end}, x);
}
/// Columns [begin, end) of the last axis: a gate block of a (batch, 4H) GEMM result.
[[nodiscard]] inline var slice_cols(const var& x, std::ptrdiff_t begin, std::ptrdiff_t end)
{
    return slice(x, -1, begin, end);
}
/// Rows [begin, end) of axis 0 (time steps of a sequence).
[[nodiscard]] inline var slice_rows(const var& x, std::ptrdiff_t begin, std::ptrdiff_t end)
{
    return slice(x, 0, begin, end);
}

} // namespace unfold
