#pragma once
/// The tensor type, shapes, and the few numeric helpers every op shares: broadcasting rules,
/// reduction of a broadcast gradient back to its input's shape, SIMD loops. The GEMM is in
/// framework/gemm.hpp, the allocator in framework/allocator.hpp.

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include <unfold/framework/allocator.hpp>
#include <unfold/framework/backend.hpp>
#include <unfold/framework/error.hpp>

namespace unfold
{

/// The scalar type of every tensor. float by default; double with UNFOLD_DOUBLE defined (the CMake
/// target Unfold::unfold_f64), for gradient checks and double-precision parity tests.
#ifdef UNFOLD_DOUBLE
using real = double;
#else
using real = float;
#endif

/// An owning, row-major, dynamic-rank tensor. Sequences are (time, batch, features). Buffers of
/// 4 KiB and more are 64-byte aligned (Note [Aligned buffers]).
using tensor = xt::xarray<real, xt::layout_type::row_major, allocation::buffer_allocator<real>>;
/// A tensor's shape: one extent per axis, outermost first.
using shape_type = tensor::shape_type;

/// "(3, 4)" — the format every error message uses for shapes.
template <class S>
std::string shape_str(const S& shape)
{
    std::string out = "(";
    for (std::size_t i = 0; i < shape.size(); ++i)
        out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + (shape.size() == 1 ? ",)" : ")");
}

/// The number of elements of `shape`: the product of its extents (1 for rank 0).
inline std::size_t element_count(const shape_type& shape)
{
    std::size_t n = 1;
    for (auto d : shape)
        n *= d;
    return n;
}

/// A tensor of `shape` filled with zeros.
inline tensor zeros(const shape_type& shape) { return tensor(shape, real(0)); }
/// A tensor of `shape` filled with `value`.
inline tensor full(const shape_type& shape, real value) { return tensor(shape, value); }

/// NumPy broadcasting of two shapes; throws naming `op` when they are incompatible.
inline shape_type broadcast_shape(const char* op, const shape_type& a, const shape_type& b)
{
    const std::size_t rank = std::max(a.size(), b.size());
    shape_type out(rank, 1);
    for (std::size_t i = 0; i < rank; ++i)
    {
        const std::size_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
        const std::size_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
        UNFOLD_CHECK(da == db || da == 1 || db == 1,
                     "{}: shapes {} and {} cannot be broadcast together", op, shape_str(a),
                     shape_str(b));
        out[i] = da == 1 ? db : da;
    }
    return out;
}

/// Sums a gradient of a broadcast result back to the shape of the input that was broadcast.
inline tensor unbroadcast(const tensor& g, const shape_type& target)
{
    if (g.shape() == target)
        return g;
    const std::size_t lead = g.dimension() - target.size();
    std::vector<std::size_t> axes;
    for (std::size_t i = 0; i < lead; ++i)
        axes.push_back(i);
    for (std::size_t i = 0; i < target.size(); ++i)
        if (target[i] == 1 && g.shape()[lead + i] != 1)
            axes.push_back(lead + i);
    tensor reduced = xt::sum(g, axes, xt::evaluation_strategy::immediate);
    return reduced.reshape(target);
}

/// True when `inner` broadcasts against `outer` as a repeated trailing block: after dropping its
/// leading 1s, inner's shape is a suffix of outer's (a bias row added to every row of a batch).
/// Such pairs take the plain loops below instead of xtensor's general broadcasting.
inline bool is_suffix_broadcast(const shape_type& outer, const shape_type& inner)
{
    std::size_t lead = 0;
    while (lead < inner.size() && inner[lead] == 1)
        ++lead;
    const std::size_t rank = inner.size() - lead;
    return rank <= outer.size() &&
           std::equal(inner.begin() + static_cast<std::ptrdiff_t>(lead), inner.end(),
                      outer.end() - static_cast<std::ptrdiff_t>(rank));
}

namespace detail
{
/// N tensors walked together over one broadcast shape `out` (Note [Broadcast loops]): the axes
/// where every operand either runs or repeats alike are merged, so that a column (B, 1) against
/// (B, H), or a (S, B, 1) against (S, B, E), is one outer and one inner axis.
template <std::size_t N>
struct broadcast_walk
{
    std::vector<std::size_t> extent;              ///< merged axes, outermost first
    std::vector<std::array<std::size_t, N>> step; ///< per merged axis, each operand's stride

    /// The walk of operands of shapes `shapes` (each broadcasting to `out`) over `out`.
    broadcast_walk(const shape_type& out, const std::array<const shape_type*, N>& shapes)
    {
        const std::size_t rank = out.size();
        std::array<std::size_t, N> stride;
        stride.fill(1);
        // From the innermost axis out: an axis where an operand has extent 1 repeats it (stride 0).
        for (std::size_t i = rank; i-- > 0;)
        {
            if (out[i] == 1)
                continue;
            std::array<std::size_t, N> here;
            for (std::size_t k = 0; k < N; ++k)
            {
                const shape_type& sh = *shapes[k];
                const std::size_t lead = rank - sh.size();
                const std::size_t d = i < lead ? 1 : sh[i - lead];
                here[k] = d == 1 ? 0 : stride[k];
                stride[k] *= d;
            }
            bool same_pattern = !extent.empty();
            for (std::size_t k = 0; k < N && same_pattern; ++k)
                same_pattern = (here[k] == 0) == (step.back()[k] == 0) &&
                               (here[k] == 0 || here[k] == step.back()[k] * extent.back());
            if (same_pattern)
                extent.back() *= out[i];
            else
            {
                extent.push_back(out[i]);
                step.push_back(here);
            }
        }
        std::reverse(extent.begin(), extent.end());
        std::reverse(step.begin(), step.end());
        if (extent.empty()) // a single element
        {
            extent.push_back(1);
            step.push_back({});
        }
    }

    /// Calls inner(offsets, n, strides) for every run of the innermost merged axis: n elements,
    /// operand k's first at offsets[k] and then every strides[k] (0: the same element).
    template <class Inner>
    void for_each_run(Inner&& inner) const
    {
        for (const std::size_t e : extent)
            if (e == 0)
                return; // nothing to walk
        const std::size_t outer = extent.size() - 1;
        std::vector<std::size_t> index(outer, 0);
        std::array<std::size_t, N> offset{};
        for (;;)
        {
            inner(offset, extent.back(), step.back());
            std::size_t a = outer;
            for (; a-- > 0;)
            {
                for (std::size_t k = 0; k < N; ++k)
                    offset[k] += step[a][k];
                if (++index[a] < extent[a])
                    break;
                for (std::size_t k = 0; k < N; ++k)
                    offset[k] -= step[a][k] * extent[a];
                index[a] = 0;
            }
            if (a == std::size_t(-1))
                return;
        }
    }
};

} // namespace detail

/// Note [Broadcast loops]
/// Elementwise ops and their backwards never build a broadcast copy or step an index per element:
/// equal shapes are one loop over the buffers, and any other broadcast is a walk
/// (detail::broadcast_walk) whose innermost run reads each operand contiguously or repeats one
/// element of it. A broadcast gradient is reduced the same way, by adding into the repeated
/// element, so a column's gradient costs one pass over the rows.

/// f(a, b) elementwise with NumPy broadcasting. Equal shapes and a trailing-block broadcast (a
/// bias) run as plain loops over the buffers, any other broadcast as a walk (Note [Broadcast
/// loops]); shapes that do not broadcast throw, naming `op`.
template <class F>
tensor broadcast_apply(const char* op, const tensor& a, const tensor& b, F f)
{
    if (a.shape() == b.shape())
    {
        tensor y = tensor::from_shape(a.shape());
        const real* pa = a.data();
        const real* pb = b.data();
        real* py = y.data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i)
            py[i] = f(pa[i], pb[i]);
        return y;
    }
    const bool b_inner = b.size() > 0 && is_suffix_broadcast(a.shape(), b.shape());
    if (b_inner || (a.size() > 0 && is_suffix_broadcast(b.shape(), a.shape())))
    {
        const tensor& outer = b_inner ? a : b;
        const std::size_t n = b_inner ? b.size() : a.size();
        tensor y = tensor::from_shape(outer.shape());
        const real* po = outer.data();
        const real* pi = (b_inner ? b : a).data();
        real* py = y.data();
        for (std::size_t r = 0, rows = y.size() / n; r < rows; ++r, po += n, py += n)
            for (std::size_t i = 0; i < n; ++i)
                py[i] = b_inner ? f(po[i], pi[i]) : f(pi[i], po[i]);
        return y;
    }
    tensor y = tensor::from_shape(broadcast_shape(op, a.shape(), b.shape()));
    const real* pa = a.data();
    const real* pb = b.data();
    real* py = y.data();
    detail::broadcast_walk<3>(y.shape(), {&y.shape(), &a.shape(), &b.shape()})
        .for_each_run([&](const std::array<std::size_t, 3>& at, std::size_t n,
                          const std::array<std::size_t, 3>& step) {
            real* out = py + at[0];
            const real* x = pa + at[1];
            const real* z = pb + at[2];
            if (step[1] && step[2])
                for (std::size_t i = 0; i < n; ++i)
                    out[i] = f(x[i], z[i]);
            else if (step[1])
                for (std::size_t i = 0; i < n; ++i)
                    out[i] = f(x[i], *z);
            else if (step[2])
                for (std::size_t i = 0; i < n; ++i)
                    out[i] = f(*x, z[i]);
            else
                for (std::size_t i = 0; i < n; ++i)
                    out[i] = f(*x, *z);
        });
    return y;
}

/// gx += unbroadcast(f(g, o)) for g of the broadcast shape and o broadcasting to it, in one walk
/// without a temporary (Note [Broadcast loops]): a broadcasting op's backward, e.g. gx += g ⊙ o.
template <class F>
void accumulate_with(tensor& gx, const tensor& g, const tensor& o, F f)
{
    real* px = gx.data();
    const real* pg = g.data();
    const real* po = o.data();
    detail::broadcast_walk<3>(g.shape(), {&gx.shape(), &g.shape(), &o.shape()})
        .for_each_run([&](const std::array<std::size_t, 3>& at, std::size_t n,
                          const std::array<std::size_t, 3>& step) {
            real* x = px + at[0];
            const real* y = pg + at[1];
            const real* z = po + at[2];
            if (step[0])
            {
                if (step[2])
                    for (std::size_t i = 0; i < n; ++i)
                        x[i] += f(y[i], z[i]);
                else
                    for (std::size_t i = 0; i < n; ++i)
                        x[i] += f(y[i], *z);
                return;
            }
            real total = 0; // gx repeats along this run: its element gets the run's sum
            if (step[2])
                for (std::size_t i = 0; i < n; ++i)
                    total += f(y[i], z[i]);
            else
                for (std::size_t i = 0; i < n; ++i)
                    total += f(y[i], *z);
            *x += total;
        });
}

/// gx += unbroadcast(g): the accumulation every broadcasting op's backward ends with.
/// See Note [Gradient accumulation] in framework/tape.hpp.
template <class E>
void accumulate(tensor& gx, E&& g)
{
    if constexpr (std::is_same_v<std::decay_t<E>, tensor>)
    {
        real* px = gx.data();
        const real* pg = g.data();
        if (gx.shape() == g.shape())
        {
            for (std::size_t i = 0, n = gx.size(); i < n; ++i)
                px[i] += pg[i];
            return;
        }
        if (gx.size() > 0 && is_suffix_broadcast(g.shape(), gx.shape()))
        {
            const std::size_t n = gx.size();
            for (std::size_t r = 0, rows = g.size() / n; r < rows; ++r, pg += n)
                for (std::size_t i = 0; i < n; ++i)
                    px[i] += pg[i];
            return;
        }
    }
    if (gx.shape() == g.shape())
        xt::noalias(gx) += g;
    else if constexpr (std::is_same_v<std::decay_t<E>, tensor>)
        accumulate_with(gx, g, g, [](real y, real) { return y; });
    else
        accumulate(gx, tensor(std::forward<E>(g)));
}

/// y[i] = f(x[i]) with f applied to xsimd batches (f is generic: it takes and returns a batch);
/// the tail runs through one padded batch.
template <class F>
void transform_simd(const real* x, real* y, std::size_t n, F f)
{
    using batch = xsimd::batch<real>;
    constexpr std::size_t w = batch::size;
    std::size_t i = 0;
    for (; i + w <= n; i += w)
        f(batch::load_unaligned(x + i)).store_unaligned(y + i);
    if (i < n)
    {
        alignas(64) real buf[w] = {};
        std::copy(x + i, x + n, buf);
        f(batch::load_aligned(buf)).store_aligned(buf);
        std::copy(buf, buf + (n - i), y + i);
    }
}

/// A tensor seen as a row-major matrix: its last axis is the columns, all others the rows.
struct matrix_dims
{
    std::size_t rows; ///< the product of every axis but the last (1 for rank 0)
    std::size_t cols; ///< the last axis (1 for rank 0)
};
/// `shape` as a matrix_dims: (T, B, F) is (T·B, F).
inline matrix_dims as_matrix(const shape_type& shape)
{
    if (shape.empty())
        return {1, 1};
    const std::size_t cols = shape.back();
    return {cols ? element_count(shape) / cols : 0, cols};
}

} // namespace unfold
