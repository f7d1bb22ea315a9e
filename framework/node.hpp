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

/// A tensor of shape (0) that owns no memory: a default-constructed xarray allocates one element,
/// which for a gradient slot that may never be used is a malloc and a free per node.
inline tensor unallocated_tensor()
{
    // A copy: constructing one computes its strides each time, at every node and dropped value.
    static const tensor empty(tensor::storage_type(), tensor::inner_shape_type{0},
                              tensor::inner_strides_type{0});
    return empty;
}

struct node
{
    node(tensor&& value_, bool requires_grad_, std::unique_ptr<backward_fn> fn_, site where_)
        : value(std::move(value_))
        , grad(unallocated_tensor())
        , requires_grad(requires_grad_)
        , fn(std::move(fn_))
        , where(where_)
    {}

    tensor value;
    tensor grad;
    bool requires_grad = false;
    bool has_grad = false;         // grad holds this backward's (zero-initialised) sum
    bool keeps_grad = false;       // retain_grad(): not released (Note [Released gradients])
    bool grad_released = false;    // grad's buffer went to the pool
    bool dropped = false;          // value freed until recomputed (Note [Recomputation])
    bool recomputable = false;     // a policy dropped or released it: backward drops it after use
    bool read_by_backward = false; // some recorded op's backward reads this value
    std::unique_ptr<backward_fn> fn;
    param bound;              // set for a parameter leaf
    site where;               // where it was recorded (Note [Sites])
    shape_type dropped_shape; // the value's shape while it is dropped

    const shape_type& shape() const { return dropped ? dropped_shape : value.shape(); }
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
