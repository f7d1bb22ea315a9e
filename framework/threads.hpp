#pragma once
/// BLAS threads per GEMM (Note [BLAS threads]): the maximum count, set_num_threads/num_threads, and
/// the policy that gives a GEMM more than one thread only when it is large enough to gain.

#include <atomic>
#include <cstddef>

#include "framework/error.hpp"

// OpenBLAS's thread controls, declared weak: with any other CBLAS they stay null, the program
// still links, and the policy does nothing. (OpenBLAS's cblas.h declares them too; a weak
// redeclaration before any use is allowed.)
extern "C" {
void openblas_set_num_threads(int) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
}

namespace unfold
{

/// Note [BLAS threads]
/// A second BLAS thread pays only for large GEMMs. On the project's machine (2 cores, OpenBLAS
/// 0.3.21 pthread, Cooperlake kernel, started with OPENBLAS_NUM_THREADS=2), bench/gemm_threads
/// timed every GEMM shape of the benchmarked RNN/GRU/LSTM steps on 1 and 2 threads (2-thread time
/// / 1-thread time, medians):
///
///     m·n·k       shape (m×n×k)           2t/1t
///     262k        16×128×128   (small RNN, per step)        1.00  (OpenBLAS runs ≤ 262k on one)
///     786k        16×384×128   (small GRU, per step)        1.18
///     1.05M       16×512×128   (small LSTM, per step)       1.15
///     2.1M        32×256×256   (medium RNN, per step)       0.93
///     6.3M        32×768×256   (medium GRU, per step)       0.72
///     8.4M        32×1024×256  (medium LSTM, per step)      0.66
///     26M         800×512×64   (small LSTM, whole sequence) 0.61
///     ≥ 17M       large, every shape                        0.55-0.60
///
/// OpenBLAS itself already keeps GEMMs of m·n·k ≤ 262,144 on one thread, but between that and
/// ~2M the second thread's wake-up and the split cost more than they save (the small config ran
/// 8.7 instead of 7.3 ms per step on plain 2 threads). Hence the threshold below, with margin:
/// below it a GEMM runs on one thread, at or above it on num_threads(). Switching costs
/// ~0.008 µs per pair of openblas_set_num_threads calls, so it is done per GEMM, and only when the
/// wanted count differs from OpenBLAS's current one (asked live, since libtorch or user code in
/// the same process may change it between our GEMMs).
constexpr double parallel_gemm_work = 4e6;

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

/// Sets the most BLAS threads a GEMM may use (like torch::set_num_threads). OpenBLAS started with
/// one thread (OPENBLAS_NUM_THREADS=1) keeps running on one whatever this says.
inline void set_num_threads(int n)
{
    UNFOLD_CHECK(n >= 1, "set_num_threads: {} threads (needs at least 1)", n);
    detail::max_threads_slot().store(n, std::memory_order_relaxed);
}

/// The policy, pure: the threads a GEMM of op(A) m×k times op(B) k×n gets when `max_threads` are
/// allowed.
constexpr int threads_for(std::size_t m, std::size_t n, std::size_t k, int max_threads)
{
    const double work = double(m) * double(n) * double(k);
    return work >= parallel_gemm_work && max_threads > 1 ? max_threads : 1;
}

namespace detail
{
/// Sets OpenBLAS's thread count for the next GEMM, when it is OpenBLAS and the count changes.
inline void use_blas_threads_for(std::size_t m, std::size_t n, std::size_t k)
{
    if (!openblas_set_num_threads || !openblas_get_num_threads)
        return;
    const int wanted = threads_for(m, n, k, num_threads());
    if (openblas_get_num_threads() != wanted)
        openblas_set_num_threads(wanted);
}
} // namespace detail

} // namespace unfold
