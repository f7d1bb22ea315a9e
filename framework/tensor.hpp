#pragma once
/// The tensor type, shapes, and the few numeric helpers every op shares: broadcasting rules,
/// reduction of a broadcast gradient back to its input's shape, SIMD loops. The GEMM is in
/// framework/gemm.hpp, the allocator in framework/allocator.hpp.

#include <algorithm>
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

/// f(a, b) elementwise with NumPy broadcasting. Equal shapes and a trailing-block broadcast (a
/// bias) run as plain loops over the buffers; other shapes fall back to xtensor (`general`
/// returns the broadcast expression's value).
template <class F, class G>
tensor broadcast_apply(const tensor& a, const tensor& b, F f, G general)
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
    return general();
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
    else
        xt::noalias(gx) += unbroadcast(tensor(std::forward<E>(g)), gx.shape());
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
