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
}

namespace unfold
{

/// Note [BLAS threads]
/// A second BLAS thread pays only for large GEMMs with a long inner dimension. bench/gemm_threads
/// timed every GEMM shape of the benchmarked RNN/GRU/LSTM steps on 1 and 2 threads (2 cores,
/// OpenBLAS 0.3.21 pthread, Cooperlake kernel, started with OPENBLAS_NUM_THREADS=2; 2-thread
/// time / 1-thread time, range over 3-6 sweeps with the other core idle):
///
///     m·n·k       shapes                                            2t/1t
///     ≤ 262k      tiny (all), small RNN per step                    1.00 (OpenBLAS keeps one)
///     0.8-1M      small GRU/LSTM per step: h·W_hhᵀ, dh              0.58-1.00
///                              dW_hh per step (k = 16)              0.98-3.34
///     2.1-8.4M    medium per step: h·W_hhᵀ, dh                      0.54-0.99
///                              dW_hh per step (k = 32)              0.60-1.86
///     6.6M        small RNN whole sequence (800×128×64, 128×64×800) 0.64-1.39
///     14-19M      hidden 384 per step, dW_hh (k = 32)               0.57-1.32
///     ≥ 8.4M, k ≥ 64: medium/large per step, all whole-sequence     0.50-0.94
///
/// With k ≤ 32 a GEMM reads and writes C about as much as it computes, and two threads share
/// one memory bus; below ~8M the wake-up and split cost as much as they save. So a GEMM gets
/// num_threads() when m·n·k >= 8e6 and k >= 64, else one thread. Training steps (bench
/// --threads-only, 2-thread/1-thread time, medians): small GRU/LSTM 0.92-0.99 (only their
/// whole-sequence GEMMs qualify; the RNN has none: 0.98-1.01), medium 0.84-0.87, its LSTM 0.69-0.70
/// (0.85 with m·n·k >= 1.6e7 alone; with 4e6 alone it swung between 0.62 and 0.95 from run to
/// run), large 0.56-0.74. Plain 2 threads made the small config slower
/// (8.7 instead of 7.3 ms per step). Switching costs ~0.008 µs per pair of
/// openblas_set_num_threads calls, so it is done per GEMM, only when the wanted count differs
/// from OpenBLAS's current one (asked live: libtorch or user code in the same process may change
/// it between our GEMMs).
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
/// OpenBLAS started with: OpenBLAS 0.3.21 then starts the extra threads (a process started with
/// OPENBLAS_NUM_THREADS=1 ran the medium LSTM step in 26 instead of 38 ms after
/// set_num_threads(2)).
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
