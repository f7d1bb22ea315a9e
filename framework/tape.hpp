#pragma once
/// The tape: an append-only record of ops, and `var`, the cheap handle to one recorded value.
/// How an op is recorded (apply) is framework/op.hpp.
///
/// Note [Tape lifetime]
/// A tape owns its nodes. A `var` is (tape, index, generation): copying it is cheap and it never
/// owns a value. clear() starts a new generation and destroying the tape ends it; a `var` from an
/// earlier generation or a destroyed tape throws unfold::error on use instead of reading freed or
/// recycled memory. References returned by var::value()/grad() stay valid until the tape is
/// cleared or destroyed, or a memory policy drops the value (nodes are kept in chunks and values
/// in objects the tape owns, so appending never moves them).
///
/// Note [Gradient accumulation]
/// Every backward *adds* into its input gradients (`xt::noalias(gx) += ...`) and the engine hands
/// it zeroed slots. That single rule makes reuse correct: a value feeding several nodes (x*x + x),
/// or a parameter bound once and used at every time step of an unrolled network, receives the sum
/// of all contributions — which is backpropagation through time for a shared weight. Intermediate
/// gradients are recomputed from zero by every backward(), so backward() is repeatable; parameter
/// gradients live in the parameter and accumulate across backward() calls until zero_grad().
/// A parameter leaf sums its contributions from zero and backward adds the sum into the
/// parameter's gradient at the leaf (as PyTorch's AccumulateGrad does); when that gradient is
/// zero as backward starts on the leaf, the leaf sums straight into it instead (0 + Σ is Σ, bit
/// for bit), so the tape keeps no second copy of the weights' gradients; the leaf's grad() then
/// reads the parameter's gradient.
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
/// Note [Recomputation]
/// A memory policy (models/bptt_memory.hpp) trades time for memory: tape::drop_values frees
/// recorded values and keeps their nodes — the op, its inputs' indices, the value's shape. A
/// dropped value is recomputed by running its op's forward again on its inputs' values
/// (recomputing dropped inputs first, back to kept values) when something reads it: an op being
/// recorded, var::value(), or backward, which needs a node's value and its inputs' values when it
/// reaches the node. Backward frees a recomputed value again once it has passed its node (nothing
/// after reads it), so it holds one segment's values at a time; a policy lets it free the values
/// it kept the same way (release_after_backward). The same ops run on the same
/// values in the same order, so values and gradients are bit-identical to keeping everything.
/// What cannot be recomputed keeps its value: leaves (data, parameters, masks made as
/// constants), ops recorded without a backward, and ops whose forward draws random numbers
/// (dropout: a second draw would differ), which the tape knows by their non-const forward.
///
/// Note [Gradient readiness]
/// A parameter is bound as a leaf at its first use, so every node that reads it comes after it:
/// when backward's reverse loop reaches the leaf, the parameter's gradient from this backward is
/// complete. Backward adds it into the parameter there and tells the tape's gradient_listener,
/// which can start work on it (data-parallel training all-reduces it, Note [Data parallelism] in
/// framework/data_parallel.hpp) while backward goes on through the earlier nodes. A parameter
/// first used late (an output head, the top layer of a stack) is ready early; one used at the
/// first step of an unroll only when backward is over.
///
/// Every node also records its site (Note [Sites] in framework/site.hpp), and in anomaly mode
/// apply and backward check for non-finite values (Note [Anomaly mode] in framework/anomaly.hpp).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
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

/// Which values tape::drop_values frees (Note [Recomputation]).
enum class recompute
{
    every_value, ///< every value an op can recompute
    cheap_values ///< all but the outputs of expensive ops (GEMMs): only cheap work is redone
};

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

/// Told by backward when each bound parameter's gradient is complete (Note [Gradient
/// readiness]); tape::set_gradient_listener.
struct gradient_listener
{
    virtual ~gradient_listener() = default;
    /// This backward's gradient of `p` has been added into p.grad(): nothing else in this backward
    /// adds to it.
    virtual void ready(const param& p) = 0;
    /// Called between nodes while backward runs, so that work started in ready() can progress.
    virtual void progress() {}
};

namespace detail
{
inline std::uint64_t next_generation()
{
    static std::atomic<std::uint64_t> counter{0}; // tapes may be made on several threads
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

/// True when every element of x is zero.
inline bool all_zero(const tensor& x)
{
    const real* p = x.data();
    return std::all_of(p, p + x.size(), [](real v) { return v == real(0); });
}

struct tape_core
{
    fn_arena fns; // before nodes: their backward_fns live in it
    node_list nodes;
    std::uint64_t generation = next_generation();
    bool alive = true;
    std::unordered_map<const void*, std::size_t> bound;                // one leaf per parameter
    std::unordered_map<std::size_t, std::vector<gradient_hook>> hooks; // by node index
    contribution_recorder* recorder = nullptr;
    gradient_listener* listener = nullptr;
    bool any_recomputable = false; // a memory policy dropped values (Note [Recomputation])
    int replays_constants = 0;     // while > 0, ops on constants keep their op, to be recomputed
    std::size_t held = 0;          // bytes_held(), kept up to date
    std::size_t peak = 0;          // the most `held` has been since reset_peak()

    /// Counts `elements` more (or fewer) values held.
    void hold(std::size_t elements)
    {
        held += elements * sizeof(real);
        peak = std::max(peak, held);
    }
    void unhold(std::size_t elements) { held -= elements * sizeof(real); }
    /// The tensor objects nodes hold their values and gradients in: never moved, so a
    /// reference to a value stays valid until the value is dropped or the tape cleared.
    std::deque<tensor> objects;
    std::vector<tensor*> spare_objects; // objects holding no buffer
    /// Released gradient buffers by element count (Note [Released gradients]).
    std::unordered_map<std::size_t, std::vector<tensor*>> pool;

    /// An object holding `value`.
    tensor* new_object(tensor&& value)
    {
        if (spare_objects.empty())
            return &objects.emplace_back(std::move(value));
        tensor* t = spare_objects.back();
        spare_objects.pop_back();
        *t = std::move(value);
        return t;
    }
    /// Frees the buffer of `*t` and the object for reuse; t becomes null.
    void free_object(tensor*& t)
    {
        *t = unallocated_tensor();
        spare_objects.push_back(t);
        t = nullptr;
    }

    /// The bytes of the values, gradients and pooled buffers the tape holds (`held`, counted
    /// as they come and go).
    std::size_t bytes_held() const { return held; }

    /// Appends a node holding `value`.
    void append(tensor&& value, bool requires_grad, fn_ptr fn, site where)
    {
        hold(value.size());
        nodes.emplace_back(new_object(std::move(value)), requires_grad, std::move(fn), where);
    }

    /// Frees node i's value until it is needed again, if its op can recompute it (Note
    /// [Recomputation]); leaves, ops recorded without a backward and ops that draw keep theirs.
    void drop_value(std::size_t i)
    {
        node& n = nodes[i];
        if (!n.fn || n.dropped || !n.fn->replayable())
            return;
        unhold(n.value->size());
        free_object(n.value);
        n.dropped = true;
        n.recomputable = true;
        any_recomputable = true;
    }

    /// Recomputes node i's value if it was dropped, first recomputing the dropped inputs it
    /// needs, back to values that were kept (an explicit stack: a segment may be long).
    void materialize(std::size_t i, std::vector<std::size_t>* recomputed = nullptr)
    {
        if (!nodes[i].dropped)
            return;
        std::vector<std::size_t> pending{i};
        while (!pending.empty())
        {
            node& n = nodes[pending.back()];
            if (!n.dropped)
            {
                pending.pop_back();
                continue;
            }
            bool ready = true;
            for (std::size_t k = 0; k < n.fn->input_count(); ++k)
                if (nodes[n.fn->input(k)].dropped)
                {
                    pending.push_back(n.fn->input(k));
                    ready = false;
                }
            if (!ready)
                continue;
            n.value = new_object(n.fn->replay(*this));
            hold(n.value->size());
            n.dropped = false;
            if (recomputed)
                recomputed->push_back(pending.back());
            pending.pop_back();
        }
    }

    /// Recomputes the dropped values backward of node i reads: of its inputs and its own.
    void materialize_for_backward(std::size_t i)
    {
        const node& n = nodes[i];
        const std::size_t inputs = n.fn->input_count();
        if (n.fn->reads(inputs))
            materialize(i);
        for (std::size_t k = 0; k < inputs; ++k)
            if (n.fn->reads(k))
                materialize(n.fn->input(k));
    }

    /// True when node n is a parameter leaf whose parameter's gradient is zero: it sums straight
    /// into that gradient (Note [Gradient accumulation]).
    static bool sums_into_parameter(const node& n)
    {
        return n.bound.defined() && n.bound.grad().shape() == n.shape() && all_zero(n.bound.grad());
    }

    /// The gradient slot of node i, zeroed on first use in a backward. A parameter leaf whose
    /// parameter's gradient is zero accumulates straight into it (Note [Gradient accumulation]).
    tensor& grad_slot(std::size_t i)
    {
        node& n = nodes[i];
        if (!n.has_grad)
        {
            if (n.grad_is_param) // an earlier backward's: decided again
            {
                n.grad = nullptr;
                n.grad_is_param = false;
            }
            if (sums_into_parameter(n))
            {
                if (n.grad)
                    recycle(n.grad);
                n.grad = &n.bound.grad();
                n.grad_is_param = true;
            }
            else
            {
                if (!n.grad) // else the buffer of an earlier backward, of the node's shape
                    n.grad = take_buffer(n.shape());
                n.grad->fill(real(0));
            }
            n.has_grad = true;
        }
        return *n.grad;
    }

    /// Gives node i's gradient buffer to the pool.
    void release_grad(std::size_t i)
    {
        node& n = nodes[i];
        if (n.grad && !n.grad_is_param)
            recycle(n.grad);
        n.grad = nullptr;
        n.grad_is_param = false;
        n.has_grad = false;
    }
    /// Moves a buffer into the pool; `buffer` becomes null.
    void recycle(tensor*& buffer)
    {
        if (buffer->size() > 0)
            pool[buffer->size()].push_back(buffer);
        else
            spare_objects.push_back(buffer);
        buffer = nullptr;
    }

    /// A buffer of `shape` (contents unspecified), from the pool when it has one.
    tensor* take_buffer(const shape_type& shape)
    {
        const auto spare = pool.find(element_count(shape));
        if (spare == pool.end() || spare->second.empty())
        {
            tensor* t = new_object(tensor::from_shape(shape));
            hold(t->size());
            return t;
        }
        tensor* t = spare->second.back();
        spare->second.pop_back();
        t->resize(shape); // same size: keeps the buffer
        return t;
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

    /// The recorded value (recomputed first if a memory policy dropped it, Note
    /// [Recomputation]).
    const tensor& value() const
    {
        detail::node& n = node();
        if (n.dropped)
        {
            std::vector<std::size_t> recomputed; // this value and the dropped ones it needed
            m_core->materialize(m_index, &recomputed);
            for (std::size_t j : recomputed)
                if (j != m_index)
                    m_core->drop_value(j);
        }
        return *n.value;
    }
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
    const shape_type& shape() const { return node().shape(); }
    /// The value's rank.
    std::size_t dimension() const { return shape().size(); }
    /// The value's element count.
    std::size_t size() const { return element_count(node().shape()); }
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
    var append(tensor&& value, bool requires_grad, detail::fn_ptr fn, site where) const
    {
        checked_index();
        m_core->append(std::move(value), requires_grad, std::move(fn), where);
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
        m_core->fns.reset();
        m_core->bound.clear();
        m_core->pool.clear(); // vars may keep the core: its buffers go now
        m_core->spare_objects.clear();
        m_core->objects.clear();
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
        const bool recomputes = m_core->any_recomputable;
        auto is_output = [&](std::size_t i) {
            for (const var& y : outputs)
                if (y.index() == i)
                    return true;
            return false;
        };
        gradient_listener* const listener = m_core->listener;
        for (std::size_t i = end; i-- > 0;)
        {
            detail::node& n = m_core->nodes[i];
            if (n.has_grad)
            {
                if (hooked)
                    if (const auto found = m_core->hooks.find(i); found != m_core->hooks.end())
                        for (const auto& hook : found->second)
                            hook(*n.grad);
                if (n.fn)
                {
                    if (recomputes)
                        m_core->materialize_for_backward(i);
                    n.fn->backward(*m_core, i);
                    if (!n.keeps_grad)
                        m_core->release_grad(i); // Note [Released gradients]
                }
            }
            // Nothing later in this backward reads it (Note [Recomputation]); an output is kept
            // for its caller (loss.item()).
            if (n.recomputable && !is_output(i))
                m_core->drop_value(i);
            if (n.bound.defined() && n.has_grad) // Note [Gradient readiness]
            {
                if (!n.grad_is_param) // else it accumulated there (grad_slot)
                    xt::noalias(n.bound.grad()) += *n.grad;
                if (listener)
                    listener->ready(n.bound);
            }
            if (listener)
                listener->progress();
        }
    }

    /// Drops every node; vars recorded so far become stale (Note [Tape lifetime]).
    void clear()
    {
        detail::keep_in_heap(m_core->bytes_held()); // Note [Allocation] in framework/heap.hpp
        for (detail::node& n : m_core->nodes)       // keep the buffers (Note [Released gradients])
        {
            if (n.grad && !n.grad_is_param)
                m_core->recycle(n.grad);
            if (n.value)
            {
                m_core->unhold(n.value->size());
                m_core->free_object(n.value);
            }
        }
        m_core->nodes.clear();
        m_core->fns.reset();
        m_core->bound.clear();
        m_core->hooks.clear();
        m_core->any_recomputable = false;
        m_core->generation = detail::next_generation();
    }

    /// Frees the values of nodes [from, to) that the tape can recompute, except those of `keep`,
    /// those that nodes recorded since `to` read, and, with recompute::cheap_values, the
    /// outputs of expensive ops. Each is recomputed when it is read again, and backward
    /// recomputes what it reads (Note [Recomputation]); gradients are unchanged, bit for bit.
    void drop_values(std::size_t from, std::size_t to, const std::vector<var>& keep,
                     recompute what = recompute::every_value)
    {
        detail::node_list& nodes = m_core->nodes;
        std::vector<std::size_t> kept;
        for (const var& v : keep)
            if (v.defined() && &detail::core_of(v) == m_core.get())
                kept.push_back(v.index());
        for (std::size_t i = to; i < nodes.size(); ++i)
            if (const auto& fn = nodes[i].fn)
                for (std::size_t k = 0; k < fn->input_count(); ++k)
                    if (const std::size_t j = fn->input(k); j >= from && j < to)
                        kept.push_back(j);
        std::sort(kept.begin(), kept.end());
        for (std::size_t i = from; i < to && i < nodes.size(); ++i)
        {
            const detail::node& n = nodes[i];
            if (std::binary_search(kept.begin(), kept.end(), i) ||
                (what == recompute::cheap_values && n.fn && n.fn->expensive()))
                continue;
            m_core->drop_value(i);
        }
    }
    /// Lets backward free the values of nodes [from, to) that it could recompute, but those of
    /// `keep` (sorted node indices), as soon as it has passed them (Note [Recomputation]): a
    /// memory policy's last segment, stored steps and kept GEMM outputs then make room for the
    /// segments backward recomputes after them. A value read after backward is recomputed.
    void release_after_backward(std::size_t from, std::size_t to,
                                const std::vector<std::size_t>& keep)
    {
        detail::node_list& nodes = m_core->nodes;
        for (std::size_t i = from; i < to && i < nodes.size(); ++i)
            if (detail::node& n = nodes[i];
                n.fn && n.fn->replayable() && !std::binary_search(keep.begin(), keep.end(), i))
                n.recomputable = true;
    }
    /// Frees the values of nodes [from, to) that no backward reads — neither their own op's nor
    /// that of any op recorded on them so far — except those of `keep`: what keeping everything
    /// needs to keep (Note [Recomputation]). Nothing is recomputed unless a value is read again.
    void drop_unread(std::size_t from, std::size_t to, const std::vector<var>& keep)
    {
        detail::node_list& nodes = m_core->nodes;
        to = std::min(to, nodes.size());
        const auto kept = [&](std::size_t i) { // keep holds a few vars: no set needed
            for (const var& v : keep)
                if (v.defined() && v.index() == i && &detail::core_of(v) == m_core.get())
                    return true;
            return false;
        };
        for (std::size_t i = from; i < to; ++i)
            if (!nodes[i].read_by_backward && !kept(i))
                m_core->drop_value(i);
    }

    /// Between replay_constants(true) and (false) (which nest), an op recorded on constants alone
    /// (which needs no backward) still keeps its op, so that drop_values can free its value and
    /// recompute it: a slice of the input data.
    void replay_constants(bool on) { m_core->replays_constants += on ? 1 : -1; }
    /// Frees one value the same way (if its op can recompute it).
    void drop_value(const var& v)
    {
        UNFOLD_CHECK(&detail::core_of(v) == m_core.get(),
                     "drop_value: the value is not on this tape");
        m_core->drop_value(v.index());
    }

    /// The number of nodes recorded since construction or the last clear().
    std::size_t size() const { return m_core->nodes.size(); }

    /// The bytes of tensor data this tape holds: every recorded value, the gradients backward
    /// kept, and released gradient buffers kept for reuse (Note [Released gradients]). After a
    /// forward pass this is what BPTT remembers until backward reaches each step.
    std::size_t bytes_held() const { return m_core->bytes_held(); }

    /// The bytes of the values of nodes [from, to) (only of expensive ops' outputs when
    /// `expensive_only`): what a memory policy's planner measures of one step.
    std::size_t value_bytes(std::size_t from, std::size_t to, bool expensive_only = false) const
    {
        std::size_t n = 0;
        for (std::size_t i = from; i < to && i < m_core->nodes.size(); ++i)
        {
            const detail::node& x = m_core->nodes[i];
            if (!expensive_only || (x.fn && x.fn->expensive()))
                n += x.value_size();
        }
        return n * sizeof(real);
    }

    /// The bytes of the parameters bound on this tape (their leaves hold copies of the values).
    std::size_t parameter_bytes() const
    {
        std::size_t n = 0;
        for (const auto& [id, i] : m_core->bound)
            n += m_core->nodes[i].value_size();
        return n * sizeof(real);
    }

    /// The bytes of the bound parameters whose gradient is not zero now: backward would sum
    /// theirs in slots of the tape's own, the others' straight into the parameters (Note
    /// [Gradient accumulation]).
    std::size_t parameter_gradient_bytes() const
    {
        std::size_t n = 0;
        for (const auto& [id, i] : m_core->bound)
            if (const detail::node& x = m_core->nodes[i];
                !detail::tape_core::sums_into_parameter(x))
                n += element_count(x.shape()); // its own slot
        return n * sizeof(real);
    }

    /// The most bytes_held() has been since the tape was made or reset_peak() was called: with a
    /// memory policy, the peak comes during backward, while a segment is recomputed.
    std::size_t peak_bytes() const { return m_core->peak; }
    /// Starts measuring peak_bytes() again from what the tape holds now.
    void reset_peak() { m_core->peak = m_core->held; }

    /// While set, backward reports every op's contribution to a bound parameter's gradient to
    /// `r` (the gradient probe, models/probe.hpp); null to stop.
    void set_recorder(contribution_recorder* r) { m_core->recorder = r; }
    /// While set, backward tells `l` as each bound parameter's gradient becomes complete (Note
    /// [Gradient readiness]); null to stop.
    void set_gradient_listener(gradient_listener* l) { m_core->listener = l; }

    /// True while a recorder is set: code that would fuse ops recorded for several sites into
    /// one should then record them one site at a time, so each contribution keeps its own site.
    bool records_contributions() const { return m_core->recorder != nullptr; }

private:
    var leaf(tensor value, bool requires_grad)
    {
        m_core->append(std::move(value), requires_grad, nullptr, site());
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
