#pragma once
/// BLAS threads per GEMM (Note [BLAS threads]): the maximum count, set_num_threads/num_threads, and
/// the policy that gives a GEMM more than one thread only where it gains.

#include <atomic>
#include <cstddef>

#include <unfold/framework/error.hpp>

// OpenBLAS's thread controls, declared weak: with any other CBLAS they stay null, the program
// still links, and the policy does nothing. (OpenBLAS's cblas.h declares them too; a weak
// redeclaration before any use is allowed.)
extern "C"
{
    void openblas_set_num_threads(int) __attribute__((weak));
    int openblas_get_num_threads(void) __attribute__((weak));
    char* openblas_get_corename(void) __attribute__((weak));
    // OpenMP's, which oneDNN's sgemm reads (Note [GEMM backends]); null without an OpenMP runtime.
    void omp_set_num_threads(int) __attribute__((weak));
    int omp_get_max_threads(void) __attribute__((weak));
}

namespace unfold
{

/// Note [BLAS threads]
/// A GEMM gets num_threads() BLAS threads when m·n·k >= 8e6 and k >= 64, else one. A second
/// thread pays only for large GEMMs with a long inner dimension: with k ≤ 32 a GEMM reads and
/// writes C about as much as it computes and two threads share one memory bus, and below ~8M
/// flops the wake-up and split cost as much as they save (bench/gemm_threads measures every GEMM
/// shape of the benchmarked steps on 1 and 2 threads; its figures are in bench/RESULTS.md).
/// Switching is cheap, so it is done per GEMM, only when the wanted count differs from OpenBLAS's
/// current one (asked live: libtorch or user code in the same process may change it between our
/// GEMMs). oneDNN's GEMMs follow the same policy through OpenMP's count. This header is the one
/// place that declares OpenBLAS's and OpenMP's thread controls.
constexpr double parallel_gemm_work = 8e6;
/// The shortest inner dimension k for which a GEMM gets more than one thread (Note [BLAS
/// threads]).
constexpr std::size_t parallel_gemm_min_k = 64;

namespace detail
{
/// The maximum: OpenBLAS's thread count when Unfold first asks (what it started with, from
/// OPENBLAS_NUM_THREADS or the core count), until set_num_threads changes it.
inline std::atomic<int>& max_threads_slot()
{
    static std::atomic<int> n{openblas_get_num_threads && openblas_get_num_threads() > 1
                                  ? openblas_get_num_threads()
                                  : 1};
    return n;
}
} // namespace detail

/// The most BLAS threads a GEMM may use (like torch::get_num_threads).
inline int num_threads() { return detail::max_threads_slot().load(std::memory_order_relaxed); }

/// Sets the most BLAS threads a GEMM may use (like torch::set_num_threads). It may exceed what
/// OpenBLAS started with: OpenBLAS then starts the extra threads.
inline void set_num_threads(int n)
{
    UNFOLD_CHECK(n >= 1, "set_num_threads: {} threads (needs at least 1)", n);
    detail::max_threads_slot().store(n, std::memory_order_relaxed);
}

/// The policy, pure: the threads a GEMM of op(A) m×k times op(B) k×n gets when `max_threads` are
/// allowed (Note [BLAS threads]).
constexpr int threads_for(std::size_t m, std::size_t n, std::size_t k, int max_threads)
{
    const double work = double(m) * double(n) * double(k);
    return work >= parallel_gemm_work && k >= parallel_gemm_min_k && max_threads > 1 ? max_threads
                                                                                     : 1;
}

namespace detail
{
/// Sets a thread control to the policy's count for the next GEMM, when the control is linked
/// (get and set non-null) and the count changes.
inline void use_threads_for(int (*get)(), void (*set)(int), std::size_t m, std::size_t n,
                            std::size_t k)
{
    if (!get || !set)
        return;
    const int wanted = threads_for(m, n, k, num_threads());
    if (get() != wanted)
        set(wanted);
}
/// OpenBLAS's count, for a GEMM on the CBLAS.
inline void use_blas_threads_for(std::size_t m, std::size_t n, std::size_t k)
{
    use_threads_for(openblas_get_num_threads, openblas_set_num_threads, m, n, k);
}
/// OpenMP's count, which oneDNN's sgemm runs on (Note [GEMM backends]).
inline void use_openmp_threads_for(std::size_t m, std::size_t n, std::size_t k)
{
    use_threads_for(omp_get_max_threads, omp_set_num_threads, m, n, k);
}
} // namespace detail

/// The BLAS's own current thread count: OpenBLAS's, or 1 with another CBLAS.
inline int blas_threads() { return openblas_get_num_threads ? openblas_get_num_threads() : 1; }

/// Sets the BLAS's own thread count directly, bypassing the per-GEMM policy until the next GEMM
/// (benchmarks that time a BLAS call alone); nothing with another CBLAS.
inline void set_blas_threads(int n)
{
    UNFOLD_CHECK(n >= 1, "set_blas_threads: {} threads (needs at least 1)", n);
    if (openblas_set_num_threads)
        openblas_set_num_threads(n);
}

/// The BLAS kernel in use: OpenBLAS's core name ("Haswell", "Cooperlake", …), or "unknown".
inline const char* blas_kernel()
{
    const char* name = openblas_get_corename ? openblas_get_corename() : nullptr;
    return name ? name : "unknown";
}

} // namespace unfold
