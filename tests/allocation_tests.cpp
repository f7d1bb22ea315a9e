// Tensor buffers (Note [Aligned buffers] in framework/tensor.hpp) and the heap a finished tape
// leaves (Note [Allocation]).
#include <boost/test/unit_test.hpp>

#include <cstdint>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <vector>

#include <unfold/framework/tape.hpp>

using namespace unfold;

namespace
{
bool aligned_64(const real* p) { return reinterpret_cast<std::uintptr_t>(p) % 64 == 0; }
} // namespace

BOOST_AUTO_TEST_SUITE(allocation)

BOOST_AUTO_TEST_CASE(buffers_of_4_kib_and_more_are_64_byte_aligned)
{
    const std::size_t first_aligned = 4096 / sizeof(real);
    std::vector<tensor> kept; // alive together, so each takes a fresh place in the heap
    for (std::size_t n : {first_aligned, first_aligned + 1, first_aligned + 3, std::size_t(5000),
                          std::size_t(32 * 1024), std::size_t(1) << 20})
        for (int k = 0; k < 5; ++k)
        {
            kept.push_back(full({n}, real(k)));
            BOOST_TEST(aligned_64(kept.back().data()), n << " elements");
        }
    // Small buffers come from plain malloc and behave like any other.
    for (int k = 0; k < 20; ++k)
        kept.push_back(full({std::size_t(k + 1)}, real(k)));
    // Values survive copies, moves and resizes between the two kinds (deallocation takes the
    // path its allocation took).
    tensor grown = kept.back(); // 20 elements of 19
    grown.resize({2 * first_aligned});
    BOOST_TEST(aligned_64(grown.data()));
    grown.fill(real(2));
    tensor moved = std::move(grown);
    tensor copied = moved;
    BOOST_TEST(aligned_64(copied.data()));
    BOOST_TEST(copied(2 * first_aligned - 1) == real(2));
    moved.resize({3});
    moved.fill(real(4));
    BOOST_TEST(moved(2) == real(4));
    BOOST_TEST(kept[5](0) == real(0));
    BOOST_TEST(kept[14](first_aligned + 2) == real(4)); // n = first_aligned + 3, k = 4
}

// Under AddressSanitizer malloc is ASan's own and mallinfo2 reports nothing. (g++ defines
// __SANITIZE_ADDRESS__; clang 14, which scripts/test's sanitizer build uses, only answers
// __has_feature.)
#if defined(__SANITIZE_ADDRESS__)
#define UNFOLD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNFOLD_TEST_ASAN 1
#endif
#endif
#if defined(__GLIBC__) && !defined(UNFOLD_TEST_ASAN)
BOOST_AUTO_TEST_CASE(a_finished_tape_leaves_its_memory_in_the_heap)
{
    // A tape holding 320 MB, in 16 MB values (below the 64 MiB mmap threshold, so in the heap).
    // Freed, they join the top of the heap; with glibc's trim threshold at the 256 MiB the
    // first tape sets, free() would hand them back to the kernel and the next step would fault
    // them in again. The tape raises the threshold before it frees them.
    const std::size_t values = 20, elements = (16u << 20) / sizeof(real);
    std::size_t arena_full = 0;
    {
        tape t;
        std::vector<var> held;
        for (std::size_t k = 0; k < values; ++k)
            held.push_back(t.constant(full({elements}, real(1))));
        arena_full = mallinfo2().arena;
        BOOST_TEST(arena_full >= values * elements * sizeof(real));
    }
    const std::size_t arena_after = mallinfo2().arena;
    BOOST_TEST(arena_after + (16u << 20) >= arena_full,
               "heap " << arena_full / 1e6 << " MB with the tape, " << arena_after / 1e6
                       << " MB after it");
}
#endif

BOOST_AUTO_TEST_SUITE_END()
