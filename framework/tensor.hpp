#pragma once
/// The tensor type, shapes, and the few numeric helpers every op shares: broadcasting rules,
/// reduction of a broadcast gradient back to its input's shape, and the one GEMM wrapper.

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string>
#include <type_traits>
#include <vector>

#include <unfold/framework/backend.hpp>
#include <unfold/framework/error.hpp>
#include <unfold/framework/threads.hpp>

namespace unfold
{

/// The scalar type of every tensor. float by default; configure with UNFOLD_DOUBLE (CMake target
/// `unfold_f64`) for gradient checks and double-precision parity tests.
#ifdef UNFOLD_DOUBLE
using real = double;
#else
using real = float;
#endif

/// The allocator lives alone in its namespace: a tensor's template arguments make it an
/// associated namespace of every unqualified call with a tensor argument (ADL).
namespace allocation
{
/// Note [Aligned buffers]
/// malloc aligns to 16 bytes, so a large tensor's rows start anywhere in a 64-byte cache line.
/// OpenBLAS's packing and C updates run slower on such buffers: with every buffer of 4 KiB or
/// more aligned to 64 bytes, the medium LSTM step (batch 32, hidden 256) took 37.2-38.1 ms
/// instead of 38.5-39.4 (three alternating runs), the GRU 1-2% less, the RNN the same. Small
/// buffers keep malloc's alignment: over-aligning them would only pad the tape's many tiny
/// values. The aligned block is carved out of malloc(bytes + 64) with the raw pointer stored just
/// before it, rather than taken from posix_memalign: glibc's memalign asks for 64 bytes + a
/// minimum chunk more than it returns, so a freed block never fits the next request of its own
/// size, and the heap of the large LSTM config grew by 57 MB (peak RSS 360 -> 414 MB).
template <class T>
struct buffer_allocator
{
    using value_type = T;                             ///< the element type
    static constexpr std::size_t alignment = 64;      ///< bytes, for large buffers
    static constexpr std::size_t aligned_from = 4096; ///< bytes: smaller buffers keep malloc's

    buffer_allocator() noexcept = default;
    /// Stateless: any two allocators are interchangeable.
    template <class U>
    buffer_allocator(const buffer_allocator<U>&) noexcept
    {}

    /// Room for n elements, uninitialised; throws std::bad_alloc when memory runs out.
    T* allocate(std::size_t n)
    {
        if (n > (std::size_t(-1) - alignment) / sizeof(T))
            throw std::bad_array_new_length();
        const std::size_t bytes = n * sizeof(T);
        if (bytes < aligned_from)
        {
            void* p = std::malloc(bytes ? bytes : 1);
            if (!p)
                throw std::bad_alloc();
            return static_cast<T*>(p);
        }
        void* raw = std::malloc(bytes + alignment);
        if (!raw)
            throw std::bad_alloc();
        // malloc's 16-byte alignment leaves 16 to 64 bytes before the aligned block: room for
        // the raw pointer.
        const auto at = (reinterpret_cast<std::uintptr_t>(raw) + alignment) & ~(alignment - 1);
        void** block = reinterpret_cast<void**>(at);
        block[-1] = raw;
        return reinterpret_cast<T*>(block);
    }
    /// n is the count allocate() was given (the standard allocator contract), so it tells which
    /// way the block was made.
    void deallocate(T* p, std::size_t n) noexcept
    {
        if (n * sizeof(T) < aligned_from)
            std::free(p);
        else
            std::free(reinterpret_cast<void**>(p)[-1]);
    }

    /// Always true: memory from one allocator may be freed by any other.
    template <class U>
    bool operator==(const buffer_allocator<U>&) const noexcept
    {
        return true;
    }
    /// Always false.
    template <class U>
    bool operator!=(const buffer_allocator<U>&) const noexcept
    {
        return false;
    }
};
} // namespace allocation

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

namespace detail
{
/// Note [Allocation]
/// A training step allocates and frees the same tensor sizes over and over. glibc serves blocks of
/// 128 KiB and more with mmap and returns them with munmap, so every such tensor (one (32, 1024)
/// float gate block) cost page faults and zeroing by the kernel: ~15% of a medium LSTM step. The
/// first tape raises the mmap threshold once (64 MiB) so that freed blocks stay in the heap for
/// the next step. glibc also gives the top of the heap back to the kernel once more than
/// M_TRIM_THRESHOLD is free there — which is what a finished step's tape leaves: with the
/// threshold at 256 MiB, the large configs (a 330 MB tape) faulted their memory back in every
/// step, and the GRU step took 721-742 ms instead of 556-566 (357K instead of 215K page faults).
/// So a tape, before it frees its values, raises the threshold to twice the most any tape has
/// held (keep_in_heap): a training loop keeps one step's memory, as a caching allocator would,
/// and memory beyond that is still returned.

/// Raises glibc's trim threshold to twice `bytes` (never lowers it; at most INT_MAX, mallopt's
/// limit) so that the `bytes` a tape is about to free stay in the heap (Note [Allocation]).
inline void keep_in_heap(std::size_t bytes)
{
#ifdef __GLIBC__
    static std::mutex lock;           // once per tape: the lock costs nothing that matters
    static std::size_t threshold = 0; // glibc's default until the first tape sets it
    const std::size_t wanted = std::min<std::size_t>(2 * bytes, INT_MAX);
    const std::lock_guard<std::mutex> hold(lock);
    if (wanted > threshold)
    {
        threshold = wanted;
        mallopt(M_TRIM_THRESHOLD, int(wanted));
    }
#else
    (void)bytes;
#endif
}

inline void tune_allocator()
{
#ifdef __GLIBC__
    static const bool once = [] {
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        keep_in_heap(std::size_t(128) << 20); // trim threshold 256 MiB
        return true;
    }();
    (void)once;
#endif
}

inline void cblas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
                       const float* a, int lda, const float* b, int ldb, float beta, float* c,
                       int ldc)
{
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void cblas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha,
                       const double* a, int lda, const double* b, int ldb, double beta, double* c,
                       int ldc)
{
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
} // namespace detail

/// C = alpha · op(A) · op(B) + beta · C on row-major buffers, op(X) = Xᵀ when the flag is set.
/// op(A) is m×k, op(B) is k×n, C is m×n. Transposes are never materialised. Runs on one BLAS
/// thread or on num_threads() by its size (Note [BLAS threads] in framework/threads.hpp).
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                 real alpha, const real* a, const real* b, real beta, real* c)
{
    if (m == 0 || n == 0)
        return;
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    const int lda = static_cast<int>(trans_a ? m : k);
    const int ldb = static_cast<int>(trans_b ? k : n);
    detail::use_blas_threads_for(m, n, k);
    detail::cblas_gemm(ta, tb, int(m), int(n), int(k), alpha, a, std::max(lda, 1), b,
                       std::max(ldb, 1), beta, c, int(n));
}

} // namespace unfold
