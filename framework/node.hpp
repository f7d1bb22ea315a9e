#pragma once
/// Node storage: one recorded op (its value, gradient slot, backward and site) and the chunked,
/// never-moving list a tape keeps its nodes in. Internal to the engine (framework/tape.hpp).

#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include <unfold/framework/param.hpp>
#include <unfold/framework/site.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

namespace detail
{
struct tape_core;

/// The type-erased backward of one recorded op (see op_node below).
struct backward_fn
{
    virtual ~backward_fn() = default;
    virtual void backward(tape_core& core, std::size_t self) = 0;
    virtual const char* name() const = 0;
    /// The number of inputs and the node index of input k.
    virtual std::size_t input_count() const = 0;
    virtual std::size_t input(std::size_t k) const = 0;
    /// True when forward can be run again on the inputs' values to give the same value: false
    /// for an op whose forward draws (dropout), which keeps its value (Note [Recomputation]).
    virtual bool replayable() const = 0;
    /// True for an op worth keeping when a policy recomputes only cheap values (a GEMM).
    virtual bool expensive() const = 0;
    /// True when backward reads input k's value (k < input_count()) or, for k = input_count(),
    /// the op's own output: backward recomputes only those (Note [Recomputation]).
    virtual bool reads(std::size_t k) const = 0;
    /// Runs forward again on the inputs' values (all present); only when replayable().
    virtual tensor replay(const tape_core& core) const = 0;
};

/// Destroys a backward_fn made in a tape's fn_arena, which keeps the memory.
struct fn_deleter
{
    void operator()(backward_fn* f) const noexcept { f->~backward_fn(); }
};
/// A node's backward, made in its tape's fn_arena.
using fn_ptr = std::unique_ptr<backward_fn, fn_deleter>;

/// Memory for the backward_fn objects of a tape's nodes, in blocks of 64 KiB: one allocation for
/// hundreds of nodes rather than one each, so that a long unroll neither calls malloc per op nor
/// scatters its nodes' small objects among the blocks the heap hands out and takes back
/// (Note [Allocation] in framework/heap.hpp). reset() reuses the blocks.
class fn_arena
{
public:
    /// Makes a T from `args` in the arena.
    template <class T, class... Args>
    fn_ptr make(Args&&... args)
    {
        static_assert(alignof(T) <= alignof(std::max_align_t));
        return fn_ptr(new (allocate(sizeof(T), alignof(T))) T(std::forward<Args>(args)...));
    }
    /// Forgets every object (the caller has destroyed them); keeps the blocks.
    void reset()
    {
        m_block = 0;
        m_used = 0;
        m_large.clear();
    }

private:
    static constexpr std::size_t block_size = 64 * 1024;
    void* allocate(std::size_t bytes, std::size_t align)
    {
        if (bytes > block_size / 4) // a large op (one holding a tensor) gets a block of its own
        {
            m_large.emplace_back(new std::max_align_t[(bytes + sizeof(std::max_align_t) - 1) /
                                                      sizeof(std::max_align_t)]);
            return m_large.back().get();
        }
        m_used = (m_used + align - 1) / align * align;
        if (m_blocks.empty() || m_used + bytes > block_size)
        {
            if (!m_blocks.empty())
                ++m_block;
            if (m_block == m_blocks.size())
                m_blocks.emplace_back(new std::max_align_t[block_size / sizeof(std::max_align_t)]);
            m_used = 0;
        }
        void* p = reinterpret_cast<std::byte*>(m_blocks[m_block].get()) + m_used;
        m_used += bytes;
        return p;
    }
    std::vector<std::unique_ptr<std::max_align_t[]>> m_blocks, m_large;
    std::size_t m_block = 0, m_used = 0;
};

/// The tensor of shape (0) that owns no memory: a default-constructed xarray allocates one
/// element, which for a gradient slot that may never be used is a malloc and a free per node.
inline const tensor& empty_tensor()
{
    // Built once: constructing one computes its strides each time.
    static const tensor empty(tensor::storage_type(), tensor::inner_shape_type{0},
                              tensor::inner_strides_type{0});
    return empty;
}
/// A copy of empty_tensor(), to own.
inline tensor unallocated_tensor() { return empty_tensor(); }

/// One recorded value. The value and the gradient live in tensor objects the tape owns
/// (tape_core::objects), so that a node whose value a memory policy dropped, or whose gradient
/// went back to the pool, costs its bookkeeping alone: a long unroll under a policy keeps every
/// node and few values (Note [Recomputation]).
struct node
{
    node(tensor* value_, bool requires_grad_, fn_ptr fn_, site where_)
        : value(value_)
        , value_shape(value_->shape())
        , requires_grad(requires_grad_)
        , fn(std::move(fn_))
        , where(where_)
    {}

    tensor* value;          // null while dropped (Note [Recomputation])
    tensor* grad = nullptr; // a tape buffer, the bound parameter's gradient, or null
    shape_type value_shape; // the value's shape, dropped or not
    bool requires_grad = false;
    bool has_grad = false;      // grad holds this backward's (zero-initialised) sum
    bool keeps_grad = false;    // retain_grad(): not released (Note [Released gradients])
    bool grad_is_param = false; // grad is the bound parameter's own (Note [Gradient accumulation])
    bool dropped = false;       // value freed until recomputed (Note [Recomputation])
    bool recomputable = false;  // a policy dropped or released it: backward drops it after use
    bool read_by_backward = false; // some recorded op's backward reads this value
    fn_ptr fn;
    param bound; // set for a parameter leaf
    site where;  // where it was recorded (Note [Sites])

    const shape_type& shape() const { return value_shape; }
    /// The value, or an empty tensor while it is dropped: what a backward that does not read
    /// it gets (Note [Recomputation]).
    const tensor& value_or_empty() const { return value ? *value : empty_tensor(); }
    /// The elements of the value held (0 while dropped).
    std::size_t value_size() const { return value ? value->size() : 0; }
};

/// The nodes of a tape in chunks of 128: appending never moves a node, so references into the list
/// stay valid (Note [Tape lifetime]), and a chunk costs one allocation (a std::deque holds a node
/// this large in a block of its own, one allocation per node). clear() keeps the chunks.
class node_list
{
public:
    node_list() = default;
    node_list(const node_list&) = delete;
    node_list& operator=(const node_list&) = delete;
    ~node_list() { clear(); }

    std::size_t size() const { return m_size; }
    node& operator[](std::size_t i) { return m_chunks[i / chunk].get()[i % chunk]; }
    const node& operator[](std::size_t i) const { return m_chunks[i / chunk].get()[i % chunk]; }
    node& back() { return (*this)[m_size - 1]; }

    template <class... Args>
    node& emplace_back(Args&&... args)
    {
        if (m_size == m_chunks.size() * chunk)
            m_chunks.emplace_back(std::allocator<node>().allocate(chunk));
        node* slot = &(*this)[m_size];
        new (slot) node(std::forward<Args>(args)...);
        ++m_size;
        return *slot;
    }
    void clear()
    {
        for (std::size_t i = 0; i < m_size; ++i)
            (*this)[i].~node();
        m_size = 0;
    }

    template <class List, class Node>
    struct iterator_of
    {
        List* list;
        std::size_t i;
        Node& operator*() const { return (*list)[i]; }
        iterator_of& operator++()
        {
            ++i;
            return *this;
        }
        bool operator!=(const iterator_of& other) const { return i != other.i; }
    };
    using iterator = iterator_of<node_list, node>;
    using const_iterator = iterator_of<const node_list, const node>;
    iterator begin() { return {this, 0}; }
    iterator end() { return {this, m_size}; }
    const_iterator begin() const { return {this, 0}; }
    const_iterator end() const { return {this, m_size}; }

private:
    static constexpr std::size_t chunk = 128;
    struct release_chunk
    {
        void operator()(node* p) const { std::allocator<node>().deallocate(p, chunk); }
    };
    std::vector<std::unique_ptr<node, release_chunk>> m_chunks;
    std::size_t m_size = 0;
};

} // namespace detail

} // namespace unfold
