#pragma once
/// The allocator of every tensor buffer: 64-byte alignment for large buffers
/// (Note [Aligned buffers]).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace unfold
{

/// The allocator lives alone in its namespace: a tensor's template arguments make it an
/// associated namespace of every unqualified call with a tensor argument (ADL).
namespace allocation
{
/// Note [Aligned buffers]
/// Buffers of 4 KiB and more are aligned to 64 bytes, a cache line: malloc's 16 bytes let a large
/// tensor's rows start anywhere in a line, and OpenBLAS's packing and C updates run slower on
/// such buffers. Small buffers keep malloc's alignment, which would only pad the tape's many tiny
/// values. The aligned block is carved out of malloc(bytes + 64), the raw pointer stored just
/// before it, rather than taken from posix_memalign, whose extra request keeps a freed block from
/// fitting the next request of its own size (the heap grows). Measurements: bench/RESULTS.md.
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

} // namespace unfold
