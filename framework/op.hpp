#pragma once
/// The op contract and the two calls that record an op on a tape, apply and apply_n. Everything an
/// op file (`ops/<name>.hpp`) needs: tensors, the tape, and the gradient-check spec.
///
/// Note [Op contract]
/// An op is a struct, `<name>_op`, with
///     static constexpr const char* name = "<name>";          // in error and anomaly messages
///     tensor forward(const tensor& x...) const;              // one tensor per input
///     void backward(const tensor& x..., const tensor& y, const tensor& gy, tensor& gx...) const;
///     static gradcheck_spec check();                         // what check_op and the sweep run
/// and a free function that records it: `var f(const var& x) { return apply(f_op{}, x); }`
/// (apply_n for a variable number of inputs: forward and backward take vectors of pointers).
/// - backward *adds* into every gx: `xt::noalias(gx) += ...` (Note [Gradient accumulation] in
///   framework/tape.hpp). It receives the inputs, the output y (to reuse, e.g. 1 − y² for tanh)
///   and the output's gradient gy; gx slots arrive zeroed or holding earlier contributions.
/// - The empty slot of an unneeded gradient: an input that needs no gradient (data, a constant, a
///   detached state) still gets a zeroed scratch slot, so backward can always add into it. An op
///   whose unneeded gradients are costly (a GEMM) declares
///       static constexpr bool skips_unneeded_grads = true;
///   and then receives an *empty* slot (size 0) for such an input, which its backward must leave
///   alone (`if (ga.size())`): the sequence data fed to a recurrent layer costs no dX this way.
/// - A stateful forward: forward may be non-const and keep state in the op object (dropout's
///   mask); the op is stored with its node after forward has run, and backward sees that state.
///   A const forward must give the same value when run again: a memory policy recomputes
///   values that way (Note [Recomputation] in framework/tape.hpp); a non-const one never is.
/// - A GEMM declares `static constexpr bool expensive = true`, so that a policy that recomputes
///   only cheap values keeps its output; an op may declare which values its backward reads,
///   `static constexpr unsigned backward_reads` (bit k: input k, bit N: its output), so that a
///   policy recomputes only those.
/// - Errors: forward checks its inputs with UNFOLD_CHECK, naming the op and both shapes; apply
///   adds the site where it was recorded (Note [Sites]).
/// - Nothing else registers an op: the build lists the files of ops/ and the gradient-check sweep
///   checks every one in double precision.

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <unfold/framework/anomaly.hpp>
#include <unfold/framework/gradcheck_spec.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// True when Op declares `static constexpr bool skips_unneeded_grads = true` (Note [Op contract]).
template <class Op, class = void>
struct skips_unneeded_grads : std::false_type
{};
/// The specialisation for ops that declare the flag.
template <class Op>
struct skips_unneeded_grads<Op, std::void_t<decltype(Op::skips_unneeded_grads)>>
    : std::bool_constant<Op::skips_unneeded_grads>
{};

/// True when Op declares `static constexpr bool expensive = true`: a GEMM, worth keeping when a
/// memory policy recomputes only cheap values (Note [Recomputation] in framework/tape.hpp).
template <class Op, class = void>
struct is_expensive : std::false_type
{};
/// The specialisation for ops that declare the flag.
template <class Op>
struct is_expensive<Op, std::void_t<decltype(Op::expensive)>> : std::bool_constant<Op::expensive>
{};

namespace detail
{
/// False when Op declares `static constexpr bool backward_reads_input = false`.
template <class Op, class = void>
struct reads_its_input : std::true_type
{};
template <class Op>
struct reads_its_input<Op, std::void_t<decltype(Op::backward_reads_input)>>
    : std::bool_constant<Op::backward_reads_input>
{};
} // namespace detail

/// Which values Op's backward reads: bit k for input k, bit N (the input count) for its output.
/// An op declares `static constexpr unsigned backward_reads = ...` to spare a memory policy the
/// recomputation of values it never reads (Note [Recomputation]); by default it reads them all.
/// An elementwise op that declares `backward_reads_input = false` reads only its output.
template <class Op, class = void>
struct backward_reads
{
    static constexpr unsigned value = detail::reads_its_input<Op>::value ? ~0u : ~1u; ///< default
};
/// The specialisation for ops that declare what they read.
template <class Op>
struct backward_reads<Op, std::void_t<decltype(Op::backward_reads)>>
{
    static constexpr unsigned value = Op::backward_reads; ///< the op's declaration
};

namespace detail
{
template <std::size_t>
using input_value = const tensor&;

/// True when Op's forward over N inputs is const, so running it again gives the same value
/// (a forward that draws random numbers is not const: Note [Op contract]).
template <class Op, class Seq, class = void>
struct replays_forward : std::false_type
{};
template <class Op, std::size_t... K>
struct replays_forward<
    Op, std::index_sequence<K...>,
    std::void_t<decltype(std::declval<const Op&>().forward(std::declval<input_value<K>>()...))>>
    : std::true_type
{};

/// The inputs of an op as anomaly messages describe them (only built for a message).
inline std::vector<operand> operands(const tape_core& core, const std::size_t* inputs,
                                     std::size_t count)
{
    std::vector<operand> out;
    for (std::size_t k = 0; k < count; ++k)
    {
        const node& x = core.nodes[inputs[k]];
        out.push_back({x.value, x.shape(), x.bound.defined() ? x.bound.name() : std::string()});
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
        if (x.requires_grad && !all_finite(*x.grad))
            backward_anomaly(op, core.nodes[self].where, k, *x.grad, operands(core, inputs, count));
    }
}

/// With a recorder set, an op's backward adds a bound parameter's gradient into a scratch slot;
/// this adds that contribution to the parameter leaf's gradient and reports it with the op's site.
inline void report_contribution(tape_core& core, const site& where, std::size_t input,
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
    std::size_t input_count() const override { return N; }
    std::size_t input(std::size_t k) const override { return inputs[k]; }
    bool replayable() const override
    {
        return replays_forward<Op, std::make_index_sequence<N>>::value;
    }
    bool expensive() const override { return is_expensive<Op>::value; }
    bool reads(std::size_t k) const override { return (backward_reads<Op>::value >> k) & 1u; }
    tensor replay(const tape_core& core) const override
    {
        return replay_with(core, std::make_index_sequence<N>{});
    }
    template <std::size_t... K>
    tensor replay_with(const tape_core& core, std::index_sequence<K...>) const
    {
        if constexpr (replays_forward<Op, std::index_sequence<K...>>::value)
            return op.forward(*core.nodes[inputs[K]].value...);
        else
            throw error(std::string(Op::name) + ": its forward draws, so it cannot be replayed");
    }

    template <std::size_t... K>
    void run(tape_core& core, std::size_t self, std::index_sequence<K...>)
    {
        node& y = core.nodes[self];
        std::array<std::optional<tensor>, N> scratch; // a default xarray would allocate
        std::array<tensor*, N> slots{slot(core, K, scratch[K])...};
        op.backward(core.nodes[inputs[K]].value_or_empty()..., y.value_or_empty(), *y.grad,
                    *slots[K]...);
        if (core.recorder)
            (report_contribution(core, y.where, inputs[K], scratch[K]), ...);
        if (anomaly_mode())
            check_backward(core, self, Op::name, inputs.data(), N);
    }
    tensor* slot(tape_core& core, std::size_t k, std::optional<tensor>& scratch)
    {
        const node& x = core.nodes[inputs[k]];
        if (x.requires_grad && core.recorder && x.bound.defined())
        {
            scratch = zeros(x.shape()); // this op's contribution alone, for the recorder
            return &*scratch;
        }
        if (x.requires_grad)
            return &core.grad_slot(inputs[k]);
        if constexpr (unfold::skips_unneeded_grads<Op>::value)
            scratch = unallocated_tensor(); // Note [Op contract]
        else
            scratch = zeros(core.nodes[inputs[k]].shape());
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
    std::size_t input_count() const override { return inputs.size(); }
    std::size_t input(std::size_t k) const override { return inputs[k]; }
    bool replayable() const override { return replays; }
    bool expensive() const override { return is_expensive<Op>::value; }
    bool reads(std::size_t) const override { return true; }
    tensor replay(const tape_core& core) const override
    {
        std::vector<const tensor*> xs;
        for (std::size_t i : inputs)
            xs.push_back(core.nodes[i].value);
        if constexpr (replays)
            return op.forward(xs);
        else
            throw error(std::string(Op::name) + ": its forward draws, so it cannot be replayed");
    }
    void backward(tape_core& core, std::size_t self) override
    {
        std::vector<const tensor*> xs;
        std::vector<tensor*> slots;
        std::vector<std::optional<tensor>> scratch(inputs.size());
        for (std::size_t k = 0; k < inputs.size(); ++k)
        {
            node& x = core.nodes[inputs[k]];
            xs.push_back(&x.value_or_empty());
            if (x.requires_grad && !(core.recorder && x.bound.defined()))
                slots.push_back(&core.grad_slot(inputs[k]));
            else
            {
                scratch[k] = zeros(x.shape());
                slots.push_back(&*scratch[k]);
            }
        }
        node& y = core.nodes[self];
        op.backward(xs, y.value_or_empty(), *y.grad, slots);
        if (core.recorder)
            for (std::size_t k = 0; k < inputs.size(); ++k)
                report_contribution(core, y.where, inputs[k], scratch[k]);
        if (anomaly_mode())
            check_backward(core, self, Op::name, inputs.data(), inputs.size());
    }

    static constexpr bool replays =
        std::is_invocable_v<decltype(&Op::forward), const Op&, const std::vector<const tensor*>&>;
    Op op;
    std::vector<std::size_t> inputs;
};

/// Runs an op's forward; an unfold::error it raises gets the site where the op is being recorded
/// (Note [Sites]).
template <class F>
tensor forward_at(const site& where, F&& forward)
{
    try
    {
        return std::forward<F>(forward)();
    }
    catch (const error& e)
    {
        const std::string at = at_site(where);
        if (at.empty())
            throw;
        throw error(e.what() + (" (recorded" + at + ")"));
    }
}
} // namespace detail

/// Records `op` applied to `inputs` (all on one tape) and returns its output (Note [Op
/// contract]). An op file
/// also gives its op `static gradcheck_spec check()`, the cases check_op tests, and may declare
/// `static constexpr bool skips_unneeded_grads = true` to receive an empty gx (size 0), which
/// backward must leave alone, for an input that needs no gradient (Note [Unneeded gradients]).
template <class Op, class... V>
[[nodiscard]] var apply(Op op, const V&... inputs)
{
    static_assert(sizeof...(V) > 0 && (std::is_same_v<V, var> && ...),
                  "apply(op, inputs...) takes one or more vars");
    const var& first = std::get<0>(std::tie(inputs...));
    detail::tape_core& core = detail::core_of(first);
    UNFOLD_CHECK(((&detail::core_of(inputs) == &core) && ...),
                 "{}: inputs are recorded on different tapes", Op::name);
    const site where = current_site();
    tensor value = detail::forward_at(where, [&] { return op.forward(inputs.value()...); });
    if (anomaly_mode() && !detail::all_finite(value))
    {
        const std::array<std::size_t, sizeof...(V)> indices{inputs.index()...};
        detail::forward_anomaly(Op::name, where, value,
                                detail::operands(core, indices.data(), indices.size()));
    }
    const bool requires_grad = grad_enabled() && (inputs.requires_grad() || ...);
    detail::fn_ptr fn;
    if (requires_grad || (core.replays_constants > 0 && grad_enabled()))
        fn = core.fns.make<detail::op_node<Op, sizeof...(V)>>(
            std::move(op), std::array<std::size_t, sizeof...(V)>{inputs.index()...});
    if (requires_grad) // what this op's backward will read (Note [Recomputation])
    {
        constexpr unsigned reads = backward_reads<Op>::value;
        std::size_t k = 0;
        ((core.nodes[inputs.index()].read_by_backward |= ((reads >> k++) & 1u) != 0), ...);
    }
    var y = first.append(std::move(value), requires_grad, std::move(fn), where);
    core.nodes[y.index()].read_by_backward =
        requires_grad && ((backward_reads<Op>::value >> sizeof...(V)) & 1u) != 0;
    return y;
}

/// apply() for ops over a variable number of inputs; Op::forward takes
/// `const std::vector<const tensor*>&`.
template <class Op>
[[nodiscard]] var apply_n(Op op, const std::vector<var>& inputs)
{
    UNFOLD_CHECK(!inputs.empty(), "{}: needs at least one input", Op::name);
    detail::tape_core& core = detail::core_of(inputs.front());
    std::vector<const tensor*> values;
    std::vector<std::size_t> indices;
    bool requires_grad = false;
    for (const var& x : inputs)
    {
        UNFOLD_CHECK(&detail::core_of(x) == &core, "{}: inputs are recorded on different tapes",
                     Op::name);
        values.push_back(&x.value());
        indices.push_back(x.index());
        requires_grad = requires_grad || x.requires_grad();
    }
    const site where = current_site();
    tensor value = detail::forward_at(where, [&] { return op.forward(values); });
    if (anomaly_mode() && !detail::all_finite(value))
        detail::forward_anomaly(Op::name, where, value,
                                detail::operands(core, indices.data(), indices.size()));
    requires_grad = grad_enabled() && requires_grad;
    if (requires_grad) // an op over many inputs reads them all (Note [Recomputation])
        for (std::size_t i : indices)
            core.nodes[i].read_by_backward = true;
    detail::fn_ptr fn;
    if (requires_grad || (core.replays_constants > 0 && grad_enabled()))
        fn = core.fns.make<detail::op_node_n<Op>>(std::move(op), std::move(indices));
    var y = inputs.front().append(std::move(value), requires_grad, std::move(fn), where);
    core.nodes[y.index()].read_by_backward = requires_grad;
    return y;
}

} // namespace unfold
