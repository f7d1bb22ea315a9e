#pragma once
/// How tapes keep their memory in the heap between training steps (Note [Allocation]): the one
/// owner of glibc's malloc settings.

#include <algorithm>
#include <climits>
#include <cstddef>
#include <mutex>
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace unfold
{

namespace detail
{
/// Note [Allocation]
/// A training step allocates and frees the same tensor sizes over and over. glibc serves blocks of
/// 128 KiB and more with mmap and returns them with munmap, so every such tensor would cost page
/// faults and zeroing by the kernel at every step: the first tape raises the mmap threshold once
/// (64 MiB) so that freed blocks stay in the heap for the next step. glibc also gives the top of
/// the heap back to the kernel once more than M_TRIM_THRESHOLD is free there, which is what a
/// finished step's tape leaves: so a tape, before it frees its values, raises the threshold to
/// twice the most any tape has held (keep_in_heap). A training loop keeps one step's memory, as a
/// caching allocator would, and memory beyond that is still returned. This header is the one
/// owner of both glibc settings. A block freed in the heap is reused whole only if nothing
/// long-lived was carved out of it meanwhile: oneDNN's sgemm packs an operand into a fresh
/// buffer at every call (about 1 MB at an LSTM step's shapes), and the tape's many small
/// objects, allocated one by one between those calls, would settle in the freed buffers and
/// grow the heap by one buffer per pinned hole (a long unroll under a memory policy: tens of MB).
/// So a tape keeps its nodes in chunks and their backward objects in blocks of its own
/// (node_list, fn_arena in framework/node.hpp). Measurements: bench/RESULTS.md.

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

/// Sets glibc's mmap threshold (64 MiB) and a first trim threshold (256 MiB), once per process
/// (Note [Allocation]); every tape calls it.
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

} // namespace detail

} // namespace unfold
