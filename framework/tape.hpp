#pragma once
/// The tape: an append-only record of ops, and `var`, the cheap handle to one recorded value.
///
/// Note [Tape lifetime]
/// A tape owns its nodes. A `var` is (tape, index, generation): copying it is cheap and it never
/// owns a value. clear() starts a new generation and destroying the tape ends it; a `var` from an
/// earlier generation or a destroyed tape throws unfold::error on use instead of reading freed or
/// recycled memory. References returned by var::value()/grad() stay valid until the tape is
/// cleared or destroyed (nodes are kept in chunks, so appending never moves them).
///
/// Note [Gradient accumulation]
/// Every backward *adds* into its input gradients (`xt::noalias(gx) += ...`) and the engine hands
/// it zeroed slots. That single rule makes reuse correct: a value feeding several nodes (x*x + x),
/// or a parameter bound once and used at every time step of an unrolled network, receives the sum
/// of all contributions — which is backpropagation through time for a shared weight. Intermediate
/// gradients are recomputed from zero by every backward(), so backward() is repeatable; parameter
/// gradients live in the parameter and accumulate across backward() calls until zero_grad().
///
/// Note [Released gradients]
/// As in PyTorch, backward keeps the gradients of leaves (variables, parameters) and releases an
/// intermediate's gradient as soon as its op has passed it on: nothing reads it afterwards, and
/// keeping every step's gradients of a long unroll would double the tape's memory. The released
/// buffer goes to the tape's pool and becomes the gradient slot of a later (earlier-recorded)
/// node of the same size, so a recurrent backward reuses one step's buffers instead of
/// allocating (and page-faulting) fresh ones per step; the pool survives clear(), so a tape
/// reused across iterations allocates no gradient memory after the first. To read an
/// intermediate's gradient, call retain_grad() on it before backward(), or register_hook() to see
/// it while backward runs; grad() of an intermediate that was not retained throws.
///
/// Note [Backward order]
/// Nodes are appended after their inputs, so the node vector is already in topological order and
/// backward is one reverse loop over indices: no recursion, so a 200,000-step chain is as safe as
/// a 10-step one.
///
/// Every node also records its site (step, layer, gate) for error messages, and in anomaly mode
/// apply and backward check for non-finite values: see Note [Anomaly mode] in
/// framework/anomaly.hpp.

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <unfold/framework/anomaly.hpp>
#include <unfold/framework/param.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

class tape;
class var;

namespace detail
{
struct tape_core;

/// The type-erased backward of one recorded op (see op_node below).
struct backward_fn
{
    virtual ~backward_fn() = default;
    virtual void backward(tape_core& core, std::size_t self) = 0;
    virtual const char* name() const = 0;
};

/// A tensor of shape (0) that owns no memory: a default-constructed xarray allocates one element,
/// which for a gradient slot that may never be used is a malloc and a free per node.
inline tensor unallocated_tensor()
{
    return tensor(tensor::storage_type(), tensor::inner_shape_type{0},
                  tensor::inner_strides_type{0});
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
    bool has_grad = false;      // grad holds this backward's (zero-initialised) sum
    bool keeps_grad = false;    // retain_grad(): not released (Note [Released gradients])
    bool grad_released = false; // grad's buffer went to the pool
    std::unique_ptr<backward_fn> fn;
    param bound; // set for a parameter leaf
    site where;  // where it was recorded (Note [Anomaly mode])
};

inline std::uint64_t next_generation()
{
    static std::uint64_t counter = 0; // guarded by being touched only on tape creation/clear
    return ++counter;
}

/// Receives, in backward, every op's contribution to a bound parameter's gradient together with
/// the site of that op (see models/probe.hpp).
struct contribution_recorder
{
    virtual ~contribution_recorder() = default;
    virtual void record(const param& p, const site& where, const tensor& contribution) = 0;
};

using gradient_hook = std::function<void(const tensor& grad)>;

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

struct tape_core
{
    node_list nodes;
    std::uint64_t generation = next_generation();
    bool alive = true;
    std::unordered_map<const param_data*, std::size_t> bound; // one leaf per parameter
    std::unordered_map<std::size_t, std::vector<gradient_hook>> hooks; // by node index
    contribution_recorder* recorder = nullptr;
    /// Released gradient buffers by element count (Note [Released gradients]).
    std::unordered_map<std::size_t, std::vector<tensor>> pool;

    /// The bytes of the values, gradients and pooled buffers the tape holds.
    std::size_t bytes_held() const
    {
        std::size_t n = 0;
        for (const node& x : nodes)
            n += x.value.size() + x.grad.size();
        for (const auto& [size, buffers] : pool)
            n += size * buffers.size();
        return n * sizeof(real);
    }

    /// The gradient slot of node i, zeroed on first use in a backward.
    tensor& grad_slot(std::size_t i)
    {
        node& n = nodes[i];
        if (!n.has_grad)
        {
            if (n.grad_released || n.grad.shape() != n.value.shape())
                take_buffer(n.grad, n.value.shape());
            n.grad.fill(real(0));
            n.grad_released = false;
            n.has_grad = true;
        }
        return n.grad;
    }

    /// Gives node i's gradient buffer to the pool.
    void release_grad(std::size_t i)
    {
        node& n = nodes[i];
        recycle(n.grad);
        n.grad_released = true;
        n.has_grad = false;
    }
    /// Moves a buffer into the pool.
    void recycle(tensor& buffer)
    {
        if (buffer.size() > 0)
            pool[buffer.size()].push_back(std::move(buffer));
    }

    /// Makes `t` a buffer of `shape` (contents unspecified), from the pool when it has one.
    void take_buffer(tensor& t, const shape_type& shape)
    {
        const auto spare = pool.find(element_count(shape));
        if (spare == pool.end() || spare->second.empty())
        {
            t = tensor::from_shape(shape);
            return;
        }
        t = std::move(spare->second.back());
        spare->second.pop_back();
        t.resize(shape); // same size: keeps the buffer
    }
};

/// The inputs of an op as anomaly messages describe them (only built for a message).
inline std::vector<operand> operands(const tape_core& core, const std::size_t* inputs,
                                     std::size_t count)
{
    std::vector<operand> out;
    for (std::size_t k = 0; k < count; ++k)
    {
        const node& x = core.nodes[inputs[k]];
        out.push_back({&x.value, x.bound.defined() ? x.bound.name() : std::string()});
    }
    return out;
}

/// Anomaly mode's backward check: throws if an input gradient op `self` just accumulated into is
/// not finite (Note [Anomaly mode]).
inline void check_backward(const tape_core& core, std::size_t self, const char* op,
                           const std::size_t* inputs, std::size_t count)
{
    for (std::size_t k = 0; k < count; ++k)
    {
        const node& x = core.nodes[inputs[k]];
        if (x.requires_grad && !all_finite(x.grad))
            backward_anomaly(op, core.nodes[self].where, k, x.grad,
                             operands(core, inputs, count));
    }
}

inline bool& grad_mode_flag()
{
    UNFOLD_THREAD_LOCAL bool enabled = true;
    return enabled;
}
} // namespace detail

/// True unless a no_grad_guard is alive on this thread.
inline bool grad_enabled() { return detail::grad_mode_flag(); }

/// While alive, ops record values only: no node requires a gradient and no backward is kept
/// (evaluation, sampling, finite differences).
class no_grad_guard
{
public:
    no_grad_guard()
        : m_previous(detail::grad_mode_flag())
    {
        detail::grad_mode_flag() = false;
    }
    ~no_grad_guard() { detail::grad_mode_flag() = m_previous; }
    no_grad_guard(const no_grad_guard&) = delete;
    no_grad_guard& operator=(const no_grad_guard&) = delete;

private:
    bool m_previous;
};

/// A handle to one value recorded on a tape. See Note [Tape lifetime].
class var
{
public:
    var() = default;

    /// The recorded value.
    const tensor& value() const { return node().value; }
    /// d(output)/d(this) from the last backward() of this tape; zeros if it did not reach here.
    /// For an intermediate (an op's output that requires a gradient) only after retain_grad()
    /// (Note [Released gradients]).
    const tensor& grad() const
    {
        const std::size_t i = checked_index(); // before m_core is dereferenced
        const detail::node& n = m_core->nodes[i];
        UNFOLD_CHECK(!n.fn || n.keeps_grad,
                     "grad(): the gradient of an intermediate value (the output of {}{}) is "
                     "released during backward; call retain_grad() on it before backward(), or "
                     "register_hook() to see it",
                     n.fn->name(), detail::site_str(n.where));
        return m_core->grad_slot(i);
    }
    /// Keeps this value's gradient after backward (leaves always keep theirs).
    const var& retain_grad() const
    {
        node().keeps_grad = true;
        return *this;
    }
    /// Calls `hook` with d(output)/d(this) during every later backward() that reaches this value,
    /// once its gradient is complete (before it flows on to this value's inputs).
    const var& register_hook(detail::gradient_hook hook) const
    {
        const std::size_t i = checked_index();
        m_core->hooks[i].push_back(std::move(hook));
        return *this;
    }
    /// The value's shape.
    const shape_type& shape() const { return node().value.shape(); }
    /// The value's rank.
    std::size_t dimension() const { return shape().size(); }
    /// The value's element count.
    std::size_t size() const { return node().value.size(); }
    /// True when backward computes a gradient for this value (false for constants, detached
    /// values, and everything recorded under no_grad_guard).
    bool requires_grad() const { return node().requires_grad; }
    /// False for a default-constructed handle; true even once the handle is stale.
    bool defined() const { return m_core != nullptr; }
    /// The value of a one-element tensor.
    real item() const
    {
        const tensor& v = value();
        UNFOLD_CHECK(v.size() == 1, "item(): the value has shape {}, not a single element",
                     shape_str(v.shape()));
        return v.data()[0];
    }

    /// The node's position on its tape.
    std::size_t index() const { return checked_index(); }
    /// The tape's internals, for the engine (apply); not for user code.
    detail::tape_core& core() const
    {
        checked_index();
        return *m_core;
    }

private:
    friend class tape;
    var(std::shared_ptr<detail::tape_core> core, std::size_t index)
        : m_core(std::move(core))
        , m_index(index)
        , m_generation(m_core->generation)
    {}
    template <class Op, class... V>
    friend var apply(Op op, const V&... inputs);
    template <class Op>
    friend var apply_n(Op op, const std::vector<var>& inputs);
    friend var detach(const var& x);

    /// Appends a node to this var's tape and returns its handle.
    var append(tensor&& value, bool requires_grad, std::unique_ptr<detail::backward_fn> fn,
               detail::site where) const
    {
        checked_index();
        m_core->nodes.emplace_back(std::move(value), requires_grad, std::move(fn), where);
        return var(m_core, m_core->nodes.size() - 1);
    }

    std::size_t checked_index() const
    {
        UNFOLD_CHECK(m_core, "use of an empty var (default-constructed, never assigned)");
        UNFOLD_CHECK(m_core->alive, "use of a var whose tape has been destroyed");
        UNFOLD_CHECK(m_core->generation == m_generation,
                     "use of a var from a cleared tape (recorded before tape::clear(); in "
                     "truncated BPTT, carry state into the next chunk with tape::constant or "
                     "detach before clearing)");
        return m_index;
    }
    detail::node& node() const
    {
        const std::size_t i = checked_index(); // before m_core is dereferenced (UBSan)
        return m_core->nodes[i];
    }

    std::shared_ptr<detail::tape_core> m_core;
    std::size_t m_index = 0;
    std::uint64_t m_generation = 0;
};

/// An append-only record of ops; backward() walks it in reverse. See the notes above.
class tape
{
public:
    tape()
        : m_core(std::make_shared<detail::tape_core>())
    {
        detail::tune_allocator(); // Note [Allocation] in framework/tensor.hpp
    }
    ~tape()
    {
        detail::keep_in_heap(m_core->bytes_held()); // Note [Allocation] in framework/tensor.hpp
        m_core->alive = false;
        m_core->nodes.clear();
        m_core->bound.clear();
    }
    tape(const tape&) = delete;
    tape& operator=(const tape&) = delete;

    /// A leaf that never receives a gradient (data, targets, a detached state).
    var constant(tensor value) { return leaf(std::move(value), false); }
    /// A leaf whose gradient backward() computes (an input you differentiate with respect to).
    var variable(tensor value) { return leaf(std::move(value), grad_enabled()); }

    /// The leaf for parameter `p`, created on first use and reused after (one leaf per parameter
    /// per tape), so every use accumulates into one gradient. Throws if p's value has changed
    /// shape.
    var operator[](const param& p)
    {
        auto found = m_core->bound.find(p.id());
        if (found != m_core->bound.end())
            return var(m_core, found->second);
        UNFOLD_CHECK(p.value().shape() == p.shape(),
                     "parameter '{}' has a value of shape {} but was declared with shape {}",
                     p.name(), shape_str(p.value().shape()), shape_str(p.shape()));
        var leaf_var = leaf(p.value(), true);
        m_core->nodes.back().bound = p;
        m_core->bound.emplace(p.id(), leaf_var.m_index);
        return leaf_var;
    }

    /// Backpropagates from a one-element output with seed 1.
    void backward(const var& output)
    {
        UNFOLD_CHECK(output.size() == 1,
                     "backward: the output has shape {}; reduce it to one element (e.g. sum or "
                     "mean) or pass a seed gradient of that shape",
                     shape_str(output.shape()));
        backward(output, tensor(output.shape(), real(1)));
    }

    /// Backpropagates `seed` = d(loss)/d(output). Intermediate gradients are recomputed from zero;
    /// bound parameters' gradients accumulate (Note [Gradient accumulation]).
    void backward(const var& output, const tensor& seed)
    {
        backward(std::vector<var>{output}, std::vector<tensor>{seed});
    }

    /// Backpropagates several outputs at once: loss = Σ_k <seeds[k], outputs[k]>.
    void backward(const std::vector<var>& outputs, const std::vector<tensor>& seeds)
    {
        UNFOLD_CHECK(outputs.size() == seeds.size(), "backward: {} outputs but {} seeds",
                     outputs.size(), seeds.size());
        for (auto& n : m_core->nodes)
            n.has_grad = false;
        std::size_t end = 0;
        for (std::size_t k = 0; k < outputs.size(); ++k)
        {
            const var& y = outputs[k];
            UNFOLD_CHECK(&y.core() == m_core.get(), "backward: output {} is not on this tape", k);
            UNFOLD_CHECK(seeds[k].shape() == y.shape(),
                         "backward: the seed has shape {} but the output has shape {}",
                         shape_str(seeds[k].shape()), shape_str(y.shape()));
            if (!y.requires_grad())
                continue;
            UNFOLD_CHECK(!anomaly_mode() || detail::all_finite(seeds[k]),
                         "backward: the seed of output {} is not finite (anomaly mode)", k);
            xt::noalias(m_core->grad_slot(y.index())) += seeds[k];
            end = std::max(end, y.index() + 1);
        }
        const bool hooked = !m_core->hooks.empty();
        for (std::size_t i = end; i-- > 0;)
        {
            detail::node& n = m_core->nodes[i];
            if (!n.has_grad)
                continue;
            if (hooked)
                if (const auto found = m_core->hooks.find(i); found != m_core->hooks.end())
                    for (const auto& hook : found->second)
                        hook(n.grad);
            if (!n.fn)
                continue;
            n.fn->backward(*m_core, i);
            if (!n.keeps_grad)
                m_core->release_grad(i); // Note [Released gradients]
        }
        for (auto& [id, i] : m_core->bound)
        {
            detail::node& n = m_core->nodes[i];
            if (n.has_grad)
                xt::noalias(n.bound.grad()) += n.grad;
        }
    }

    /// Drops every node; vars recorded so far become stale (Note [Tape lifetime]).
    void clear()
    {
        detail::keep_in_heap(m_core->bytes_held()); // Note [Allocation] in framework/tensor.hpp
        for (detail::node& n : m_core->nodes) // keep the buffers (Note [Released gradients])
            if (n.has_grad)
                m_core->recycle(n.grad);
        m_core->nodes.clear();
        m_core->bound.clear();
        m_core->hooks.clear();
        m_core->generation = detail::next_generation();
    }

    /// The number of nodes recorded since construction or the last clear().
    std::size_t size() const { return m_core->nodes.size(); }

    /// While set, backward reports every op's contribution to a bound parameter's gradient to
    /// `r` (the gradient probe, models/probe.hpp); null to stop.
    void set_recorder(detail::contribution_recorder* r) { m_core->recorder = r; }
    /// True while a recorder is set: unroll then computes each step's input product separately,
    /// so every step's share of the input weights is attributed to that step.
    bool attributes_steps() const { return m_core->recorder != nullptr; }

private:
    var leaf(tensor value, bool requires_grad)
    {
        m_core->nodes.emplace_back(std::move(value), requires_grad, nullptr, detail::site());
        return var(m_core, m_core->nodes.size() - 1);
    }

    std::shared_ptr<detail::tape_core> m_core;
};

/// A constant copy of `x` on the same tape: gradients stop here.
inline var detach(const var& x)
{
    return x.append(tensor(x.value()), false, nullptr, detail::site());
}

namespace detail
{
/// Note [Unneeded gradients]
/// An input that does not require a gradient (data, a constant, a detached state) still gets a
/// gradient slot, a zeroed scratch tensor, so that an op's backward can always add into it. An op
/// whose unneeded gradients are costly (a GEMM) declares
///     static constexpr bool skips_unneeded_grads = true;
/// and then receives an *empty* slot (size 0) for such an input, which its backward must leave
/// alone (`if (ga.size())`); the sequence data fed to a recurrent layer costs no dX this way.
template <class Op, class = void>
struct skips_unneeded_grads : std::false_type
{};
template <class Op>
struct skips_unneeded_grads<Op, std::void_t<decltype(Op::skips_unneeded_grads)>>
    : std::bool_constant<Op::skips_unneeded_grads>
{};

/// With a recorder set, an op's backward adds a bound parameter's gradient into a scratch slot;
/// this adds that contribution to the parameter's gradient and reports it with the op's site.
inline void hand_over(tape_core& core, const site& where, std::size_t input,
                      const std::optional<tensor>& scratch)
{
    node& x = core.nodes[input];
    if (!(x.requires_grad && x.bound.defined()))
        return;
    xt::noalias(core.grad_slot(input)) += *scratch;
    core.recorder->record(x.bound, where, *scratch);
}

/// The recorded backward of an op with N inputs: hands Op::backward the inputs, the output, its
/// gradient and one zeroed gradient slot per input (a scratch slot for inputs that need none).
template <class Op, std::size_t N>
struct op_node final : backward_fn
{
    op_node(Op op_, std::array<std::size_t, N> inputs_)
        : op(std::move(op_))
        , inputs(inputs_)
    {}
    const char* name() const override { return Op::name; }
    void backward(tape_core& core, std::size_t self) override
    {
        run(core, self, std::make_index_sequence<N>{});
    }

    template <std::size_t... K>
    void run(tape_core& core, std::size_t self, std::index_sequence<K...>)
    {
        node& y = core.nodes[self];
        std::array<std::optional<tensor>, N> scratch; // a default xarray would allocate
        std::array<tensor*, N> slots{slot(core, K, scratch[K])...};
        op.backward(core.nodes[inputs[K]].value..., y.value, y.grad, *slots[K]...);
        if (core.recorder)
            (hand_over(core, y.where, inputs[K], scratch[K]), ...);
        if (anomaly_mode())
            check_backward(core, self, Op::name, inputs.data(), N);
    }
    tensor* slot(tape_core& core, std::size_t k, std::optional<tensor>& scratch)
    {
        const node& x = core.nodes[inputs[k]];
        if (x.requires_grad && core.recorder && x.bound.defined())
        {
            scratch = zeros(x.value.shape()); // this op's contribution alone, for the recorder
            return &*scratch;
        }
        if (x.requires_grad)
            return &core.grad_slot(inputs[k]);
        if constexpr (skips_unneeded_grads<Op>::value)
            scratch = unallocated_tensor(); // Note [Unneeded gradients]
        else
            scratch = zeros(core.nodes[inputs[k]].value.shape());
        return &*scratch;
    }

    Op op;
    std::array<std::size_t, N> inputs;
};

/// The same for ops over a variable number of inputs (concatenation):
/// Op::backward(xs, y, gy, gxs) with vectors of pointers.
template <class Op>
struct op_node_n final : backward_fn
{
    op_node_n(Op op_, std::vector<std::size_t> inputs_)
        : op(std::move(op_))
        , inputs(std::move(inputs_))
    {}
    const char* name() const override { return Op::name; }
    void backward(tape_core& core, std::size_t self) override
    {
        std::vector<const tensor*> xs;
        std::vector<tensor*> slots;
        std::vector<std::optional<tensor>> scratch(inputs.size());
        for (std::size_t k = 0; k < inputs.size(); ++k)
        {
            node& x = core.nodes[inputs[k]];
            xs.push_back(&x.value);
            if (x.requires_grad && !(core.recorder && x.bound.defined()))
                slots.push_back(&core.grad_slot(inputs[k]));
            else
            {
                scratch[k] = zeros(x.value.shape());
                slots.push_back(&*scratch[k]);
            }
        }
        node& y = core.nodes[self];
        op.backward(xs, y.value, y.grad, slots);
        if (core.recorder)
            for (std::size_t k = 0; k < inputs.size(); ++k)
                hand_over(core, y.where, inputs[k], scratch[k]);
        if (anomaly_mode())
            check_backward(core, self, Op::name, inputs.data(), inputs.size());
    }

    Op op;
    std::vector<std::size_t> inputs;
};
} // namespace detail

/// Records `op` applied to `inputs` (all on one tape) and returns its output.
/// Op provides `static constexpr const char* name`, `tensor forward(const tensor&...)` and
/// `void backward(const tensor&... x, const tensor& y, const tensor& gy, tensor&... gx)`, which
/// must *add* into every gx (Note [Gradient accumulation]). forward may keep state in the op
/// (a dropout mask): the op object is stored with the node after forward has run. An op file
/// also gives its op `static gradcheck_spec check()`, the cases check_op tests, and may declare
/// `static constexpr bool skips_unneeded_grads = true` to receive an empty gx (size 0), which
/// backward must leave alone, for an input that needs no gradient (Note [Unneeded gradients]).
template <class Op, class... V>
[[nodiscard]] var apply(Op op, const V&... inputs)
{
    static_assert(sizeof...(V) > 0 && (std::is_same_v<V, var> && ...),
                  "apply(op, inputs...) takes one or more vars");
    const var& first = std::get<0>(std::tie(inputs...));
    detail::tape_core& core = first.core();
    UNFOLD_CHECK(((&inputs.core() == &core) && ...), "{}: inputs are recorded on different tapes",
                 Op::name);
    tensor value = op.forward(inputs.value()...);
    const detail::site where = detail::current_site();
    if (anomaly_mode() && !detail::all_finite(value))
    {
        const std::array<std::size_t, sizeof...(V)> indices{inputs.index()...};
        detail::forward_anomaly(Op::name, where, value,
                                detail::operands(core, indices.data(), indices.size()));
    }
    const bool requires_grad = grad_enabled() && (inputs.requires_grad() || ...);
    std::unique_ptr<detail::backward_fn> fn;
    if (requires_grad)
        fn = std::make_unique<detail::op_node<Op, sizeof...(V)>>(
            std::move(op), std::array<std::size_t, sizeof...(V)>{inputs.index()...});
    return first.append(std::move(value), requires_grad, std::move(fn), where);
}

/// apply() for ops over a variable number of inputs; Op::forward takes
/// `const std::vector<const tensor*>&`.
template <class Op>
[[nodiscard]] var apply_n(Op op, const std::vector<var>& inputs)
{
    UNFOLD_CHECK(!inputs.empty(), "{}: needs at least one input", Op::name);
    detail::tape_core& core = inputs.front().core();
    std::vector<const tensor*> values;
    std::vector<std::size_t> indices;
    bool requires_grad = false;
    for (const var& x : inputs)
    {
        UNFOLD_CHECK(&x.core() == &core, "{}: inputs are recorded on different tapes", Op::name);
        values.push_back(&x.value());
        indices.push_back(x.index());
        requires_grad = requires_grad || x.requires_grad();
    }
    tensor value = op.forward(values);
    const detail::site where = detail::current_site();
    if (anomaly_mode() && !detail::all_finite(value))
        detail::forward_anomaly(Op::name, where, value,
                                detail::operands(core, indices.data(), indices.size()));
    requires_grad = grad_enabled() && requires_grad;
    std::unique_ptr<detail::backward_fn> fn;
    if (requires_grad)
        fn = std::make_unique<detail::op_node_n<Op>>(std::move(op), std::move(indices));
    return inputs.front().append(std::move(value), requires_grad, std::move(fn), where);
}

} // namespace unfold
