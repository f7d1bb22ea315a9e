#pragma once
/// The tape: an append-only record of ops, and `var`, the cheap handle to one recorded value.
/// How an op is recorded (apply) is framework/op.hpp.
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
/// Every node also records its site (Note [Sites] in framework/site.hpp), and in anomaly mode
/// apply and backward check for non-finite values (Note [Anomaly mode] in framework/anomaly.hpp).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include <unfold/framework/anomaly.hpp>
#include <unfold/framework/grad_mode.hpp>
#include <unfold/framework/heap.hpp>
#include <unfold/framework/node.hpp>
#include <unfold/framework/param.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

class tape;
class var;

/// Called with a value's gradient during backward (var::register_hook).
using gradient_hook = std::function<void(const tensor& grad)>;

/// Receives, in backward, every op's contribution to a bound parameter's gradient together with
/// the site of that op (tape::set_recorder; the gradient probe of models/probe.hpp is one).
struct contribution_recorder
{
    virtual ~contribution_recorder() = default;
    /// One op's contribution to the gradient of parameter `p`, recorded at `where`.
    virtual void record(const param& p, const site& where, const tensor& contribution) = 0;
};

namespace detail
{
inline std::uint64_t next_generation()
{
    static std::atomic<std::uint64_t> counter{0}; // tapes may be made on several threads
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

struct tape_core
{
    node_list nodes;
    std::uint64_t generation = next_generation();
    bool alive = true;
    std::unordered_map<const void*, std::size_t> bound;                // one leaf per parameter
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

/// The internals of the tape `x` is recorded on (for apply and the engine's own tests).
tape_core& core_of(const var& x);
} // namespace detail

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
                     n.fn->name(), at_site(n.where));
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
    const var& register_hook(gradient_hook hook) const
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

private:
    friend class tape;
    friend detail::tape_core& detail::core_of(const var& x);
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
               site where) const
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
        detail::tune_allocator(); // Note [Allocation] in framework/heap.hpp
    }
    ~tape()
    {
        detail::keep_in_heap(m_core->bytes_held()); // Note [Allocation] in framework/heap.hpp
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
            UNFOLD_CHECK(&detail::core_of(y) == m_core.get(),
                         "backward: output {} is not on this tape", k);
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
        detail::keep_in_heap(m_core->bytes_held()); // Note [Allocation] in framework/heap.hpp
        for (detail::node& n : m_core->nodes)       // keep the buffers (Note [Released gradients])
            if (n.has_grad)
                m_core->recycle(n.grad);
        m_core->nodes.clear();
        m_core->bound.clear();
        m_core->hooks.clear();
        m_core->generation = detail::next_generation();
    }

    /// The number of nodes recorded since construction or the last clear().
    std::size_t size() const { return m_core->nodes.size(); }

    /// The bytes of tensor data this tape holds: every recorded value, the gradients backward
    /// kept, and released gradient buffers kept for reuse (Note [Released gradients]). After a
    /// forward pass this is what BPTT remembers until backward reaches each step.
    std::size_t bytes_held() const { return m_core->bytes_held(); }

    /// While set, backward reports every op's contribution to a bound parameter's gradient to
    /// `r` (the gradient probe, models/probe.hpp); null to stop.
    void set_recorder(contribution_recorder* r) { m_core->recorder = r; }
    /// True while a recorder is set: code that would fuse ops recorded for several sites into
    /// one should then record them one site at a time, so each contribution keeps its own site.
    bool records_contributions() const { return m_core->recorder != nullptr; }

private:
    var leaf(tensor value, bool requires_grad)
    {
        m_core->nodes.emplace_back(std::move(value), requires_grad, nullptr, site());
        return var(m_core, m_core->nodes.size() - 1);
    }

    std::shared_ptr<detail::tape_core> m_core;
};

namespace detail
{
inline tape_core& core_of(const var& x)
{
    x.checked_index();
    return *x.m_core;
}
} // namespace detail

/// A constant copy of `x` on the same tape: gradients stop here.
inline var detach(const var& x) { return x.append(tensor(x.value()), false, nullptr, site()); }

} // namespace unfold
