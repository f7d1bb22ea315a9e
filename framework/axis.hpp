#pragma once
/// Axis helpers shared by the shape and reduction ops: PyTorch-style negative axes, and the
/// (outer, n, inner) view of a row-major tensor around one axis. Element (o, k, i) of that view
/// is data[(o · n + k) · inner + i], so work along any axis of any rank becomes loops over
/// contiguous runs of `inner` (or `n · inner`) elements.

#include <cstddef>
#include <string>
#include <vector>

#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// `axis` in [-rank, rank) as an index in [0, rank); negative axes count from the end.
/// Throws naming `op`, the axis and the shape when it is out of range.
inline std::size_t normalize_axis(const char* op, std::ptrdiff_t axis, const shape_type& shape)
{
    const auto rank = static_cast<std::ptrdiff_t>(shape.size());
    UNFOLD_CHECK(axis >= -rank && axis < rank, "{}: axis {} is out of range for shape {}", op, axis,
                 shape_str(shape));
    return static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
}

/// A row-major shape seen as (outer, n, inner) around `axis`: outer = Π shape[:axis],
/// n = shape[axis], inner = Π shape[axis+1:].
struct axis_blocks
{
    std::size_t outer; ///< Π shape[:axis]
    std::size_t n;     ///< shape[axis]
    std::size_t inner; ///< Π shape[axis+1:]
};
/// The (outer, n, inner) view of `shape` around `axis`, which must be in [0, rank).
inline axis_blocks blocks_around(const shape_type& shape, std::size_t axis)
{
    axis_blocks b{1, shape[axis], 1};
    for (std::size_t d = 0; d < axis; ++d)
        b.outer *= shape[d];
    for (std::size_t d = axis + 1; d < shape.size(); ++d)
        b.inner *= shape[d];
    return b;
}

/// "(2, 3), (2, 4)" — every input shape of an n-ary op, for its error messages.
inline std::string shapes_str(const std::vector<const tensor*>& xs)
{
    std::string out;
    for (std::size_t k = 0; k < xs.size(); ++k)
        out += (k ? ", " : "") + shape_str(xs[k]->shape());
    return out;
}

} // namespace unfold
