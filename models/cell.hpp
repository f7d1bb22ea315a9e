#pragma once
/// The recurrent cell contract, cell states, and the activations a cell can be given.
///
/// Note [Cell contract]
/// A cell is a small copyable struct that holds parameter handles (and fixed options such as its
/// activations) and nothing that changes while it runs. It declares its state type and one call:
///
///     using state = var;                       // or a struct of vars, e.g. lstm_state {h, c}
///     state operator()(tape& t, const var& x_t, const state& s) const;
///
/// x_t is one time step (B, I); every part of `s` is (B, H). The call records the step on `t`
/// (binding parameters with t[p]) and returns the new state; it never stores it. Running a cell
/// over time is therefore a plain loop (`unroll`, models/unroll.hpp) and backward over that tape
/// is backpropagation through time, with every shared weight receiving the sum of its per-step
/// contributions (Note [Gradient accumulation] in framework/tape.hpp).
///
/// A state is either a single `var` (the hidden state h) or a struct with
///     std::array<var, N> parts() const;                  // h first
///     static S from_parts(const std::array<var, N>& p);
/// so that generic code (layers, masking, truncated BPTT) can treat every state alike. The first
/// part is always the output h of the step (see `hidden`); every part has shape (B, H), unless
/// the cell says otherwise with
///     std::array<std::size_t, N> state_sizes() const;    // the features of each part, h first
/// as the LSTM with a projection does (h is (B, P), c is (B, H)). The layer's output then has
/// state_sizes()[0] features per direction (see `state_sizes_of`).
///
/// Nothing more is required: with these two declarations a user's cell works with `unroll`, with
/// `layer` (stacked, bidirectional, masked), with the decoder and with `check_cell`
/// (models/check_cell.hpp). `step(cell, t, x, s)` runs one step of any cell.
///
/// Note [Input projection]
/// Optionally, a cell splits off the part of its step that depends on the input alone:
///
///     var project(tape& t, const var& x) const;      // x (..., I) -> (..., G), any leading axes
///     state operator()(tape& t, const projected& p, const state& s) const;  // p.value() (B, G)
///
/// in place of operator()(t, x, s): one step is operator()(t, projected{project(t, x)}, s), which
/// is what step(cell, t, x, s) does. `unroll` (and so every layer, masked or not) projects all T
/// steps with one call — one GEMM of (T·B, I) by
/// (I, G) instead of T small ones, and one GEMM for its weight gradient in backward — and runs
/// the recurrence on the projected steps, handing step k over as block k of the projected
/// sequence. A step that starts with addmm_transposed(p, h, W) (p + h Wᵀ) reads that block in
/// place; p.value() copies it. Any cell that declares the two calls gets this; the built-in
/// cells do.

#include <array>
#include <cstddef>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include <unfold/framework/init.hpp>
#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/models/site.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/elu.hpp>
#include <unfold/ops/hard_sigmoid.hpp>
#include <unfold/ops/relu.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/sliced.hpp>
#include <unfold/ops/tanh.hpp>

namespace unfold
{

/// An elementwise function applied inside a cell (a gate or the state non-linearity). Any
/// callable var(const var&) works, e.g. a lambda composing ops. The ready-made ones below also
/// know their op, so on_columns applies them to a gate block as one node.
class activation
{
public:
    template <class F, class = std::enable_if_t<!std::is_same_v<std::decay_t<F>, activation> &&
                                                std::is_invocable_r_v<var, F&, const var&>>>
    /// Wraps a callable var(const var&); on_columns then slices first (two nodes).
    activation(F f)
        : m_apply(std::move(f))
    {}
    /// The activation of an elementwise op (sigmoid_op{}, …).
    template <class Op>
    static activation of(Op op)
    {
        activation a([op](const var& x) { return apply(op, x); });
        a.m_on_columns = [op](const var& x, std::ptrdiff_t begin, std::ptrdiff_t end) {
            return sliced(op, x, begin, end);
        };
        return a;
    }

    /// The activation applied to x.
    var operator()(const var& x) const { return m_apply(x); }
    /// (*this)(slice_cols(x, begin, end)): a gate's block of a fused pre-activation, as one node
    /// when the activation knows its op (ops/sliced.hpp).
    var on_columns(const var& x, std::ptrdiff_t begin, std::ptrdiff_t end) const
    {
        return m_on_columns ? m_on_columns(x, begin, end) : m_apply(slice_cols(x, begin, end));
    }

private:
    std::function<var(const var&)> m_apply;
    std::function<var(const var&, std::ptrdiff_t, std::ptrdiff_t)> m_on_columns;
};

/// Ready-made activations, for cell options: `o.gate = activations::hard_sigmoid();`.
namespace activations
{
/// tanh(x): the usual state activation.
inline activation tanh() { return activation::of(tanh_op{}); }
/// σ(x) = 1 / (1 + e^−x): the usual gate activation.
inline activation sigmoid() { return activation::of(sigmoid_op{}); }
/// PyTorch's hard sigmoid, clamp(x / 6 + 1/2, 0, 1): a cheap piecewise-linear gate.
inline activation hard_sigmoid() { return activation::of(hard_sigmoid_op{}); }
/// max(x, 0).
inline activation relu() { return activation::of(relu_op{}); }
/// x for x > 0, alpha·(eˣ − 1) otherwise.
inline activation elu(real alpha = 1) { return activation::of(elu_op{alpha}); }
} // namespace activations

/// A cell's input after its project() (Note [Input projection]): one step (B, G) — block `step`
/// of a projected sequence (T, B, G), or the whole of `sequence` when step < 0.
struct projected
{
    var sequence;             ///< (T, B, G) when step ≥ 0, else the step's own (B, G)
    std::ptrdiff_t step = -1; ///< the block of `sequence` this step reads; < 0: all of it

    /// The step's value (B, G); from a sequence, a copy of its block recorded on the tape.
    var value() const { return step < 0 ? sequence : select(sequence, step); }
};

/// The step's value + a · bᵀ (b a PyTorch-layout weight) with one GEMM that reads the step's
/// block in place: no copy of the block on the tape.
[[nodiscard]] inline var addmm_transposed(const projected& x, const var& a, const var& b)
{
    return apply(addmm_op{true, x.step}, x.sequence, a, b);
}

/// True when Cell declares project() (Note [Input projection]).
template <class Cell, class = void>
struct has_projection : std::false_type
{};
template <class Cell>
struct has_projection<Cell, std::void_t<decltype(std::declval<const Cell&>().project(
                                std::declval<tape&>(), std::declval<const var&>()))>>
    : std::true_type
{};

/// One step of any cell: cell(t, x, s), or, for a cell with project(), the step given
/// project(t, x) (Note [Input projection]). x is (B, I); returns the new state.
template <class Cell>
typename Cell::state step(const Cell& cell, tape& t, const var& x, const typename Cell::state& s)
{
    if constexpr (has_projection<Cell>::value)
        return cell(t, projected{cell.project(t, x)}, s);
    else
        return cell(t, x, s);
}

/// How generic code sees a state of type S: as N parts, each a (B, H) var, h first.
/// The primary template serves structs with parts() / from_parts(); `var` is specialised below.
template <class S, class = void>
struct state_traits
{
    /// std::array<var, N>, as S::parts() returns it.
    using parts_type = std::decay_t<decltype(std::declval<const S&>().parts())>;
    static constexpr std::size_t size = std::tuple_size<parts_type>::value; ///< N
    /// s.parts(): h first.
    static parts_type parts(const S& s) { return s.parts(); }
    /// S::from_parts(p), the inverse of parts.
    static S from_parts(const parts_type& p) { return S::from_parts(p); }
};

/// A single-var state: the hidden state h.
template <>
struct state_traits<var>
{
    using parts_type = std::array<var, 1>; ///< {h}
    static constexpr std::size_t size = 1; ///< one part
    /// {s}.
    static parts_type parts(const var& s) { return {s}; }
    /// p[0].
    static var from_parts(const parts_type& p) { return p[0]; }
};

/// The output h of a state (its first part), shape (B, H).
template <class S>
var hidden(const S& s)
{
    return state_traits<S>::parts(s)[0];
}

/// A state whose every part is zeros of shape (batch, hidden_size), recorded on `t` as constants.
template <class S>
S zero_state(tape& t, std::size_t batch, std::size_t hidden_size)
{
    typename state_traits<S>::parts_type p;
    for (auto& v : p)
        v = t.constant(zeros({batch, hidden_size}));
    return state_traits<S>::from_parts(p);
}

/// The features of each part of a cell's state, h first.
template <class S>
using state_sizes_type = std::array<std::size_t, state_traits<S>::size>;

/// True when Cell declares state_sizes() (Note [Cell contract]).
template <class Cell, class = void>
struct has_state_sizes : std::false_type
{};
template <class Cell>
struct has_state_sizes<Cell, std::void_t<decltype(std::declval<const Cell&>().state_sizes())>>
    : std::true_type
{};

/// cell.state_sizes() when the cell declares it, else hidden_size for every part.
template <class Cell>
state_sizes_type<typename Cell::state> state_sizes_of(const Cell& cell, std::size_t hidden_size)
{
    if constexpr (has_state_sizes<Cell>::value)
        return cell.state_sizes();
    else
    {
        state_sizes_type<typename Cell::state> sizes;
        sizes.fill(hidden_size);
        return sizes;
    }
}

/// A state whose part k is zeros of shape (batch, sizes[k]), recorded on `t` as constants.
template <class S>
S zero_state(tape& t, std::size_t batch, const state_sizes_type<S>& sizes)
{
    typename state_traits<S>::parts_type p;
    for (std::size_t k = 0; k < p.size(); ++k)
        p[k] = t.constant(zeros({batch, sizes[k]}));
    return state_traits<S>::from_parts(p);
}

/// The name of one parameter of a cell inside a layer: prefix + PyTorch name + suffix, e.g.
/// "encoder." + "weight_ih" + "_l1_reverse". The default names layer 0, forward direction.
struct param_name
{
    std::string prefix;         ///< the model's part, e.g. "encoder." (empty: none)
    std::string suffix = "_l0"; ///< layer and direction, see of_layer
    /// prefix + base + suffix.
    std::string operator()(const std::string& base) const { return prefix + base + suffix; }
    /// The suffix PyTorch gives layer l in direction d: "_l{l}", plus "_reverse" for d = 1.
    static param_name of_layer(const std::string& prefix, std::size_t l, bool reverse)
    {
        return {prefix, "_l" + std::to_string(l) + (reverse ? "_reverse" : "")};
    }
};

/// Adds a parameter drawn uniformly from [−bound, bound) to `store` (PyTorch's recurrent
/// initialisation uses bound = 1/√H).
inline param add_uniform(param_store& store, const std::string& name, const shape_type& shape,
                         real bound, generator& g)
{
    return store.add(name, g.uniform(shape, -bound, bound));
}

/// Block k of n equal column blocks of a fused pre-activation a (B, n·H): a[:, k·H, (k+1)·H).
inline var block(const var& a, std::size_t k, std::size_t n)
{
    const auto H = static_cast<std::ptrdiff_t>(a.shape().back() / n);
    return slice_cols(a, std::ptrdiff_t(k) * H, std::ptrdiff_t(k + 1) * H);
}

/// A gate: f of block k of n of the fused pre-activation a, as one node when f knows its op
/// (activation::on_columns), every op of it labelled `name` (models/site.hpp).
inline var gate(const char* name, const activation& f, const var& a, std::size_t k, std::size_t n)
{
    return label(name, [&] {
        const auto H = static_cast<std::ptrdiff_t>(a.shape().back() / n);
        return f.on_columns(a, std::ptrdiff_t(k) * H, std::ptrdiff_t(k + 1) * H);
    });
}

/// A gate on a whole pre-activation: f(pre), every op of f labelled `name`.
inline var gate(const char* name, const activation& f, const var& pre)
{
    return label(name, [&] { return f(pre); });
}

/// A gate whose pre-activation is computed under its name too: f(pre()), every op labelled `name`.
template <class Pre, class = std::enable_if_t<std::is_invocable_r_v<var, Pre&>>>
var gate(const char* name, const activation& f, Pre&& pre)
{
    return label(name, [&] { return f(pre()); });
}

/// A named part of a cell that is not a gate (the cell state): value(), every op labelled `name`.
template <class F>
var named(const char* name, F&& value)
{
    return label(name, std::forward<F>(value));
}

/// The parameters of a PyTorch-style recurrent cell with G gate blocks of H units:
/// weight_ih (G·H, I), weight_hh (G·H, H), bias_ih and bias_hh (G·H).
struct recurrent_params
{
    ///@{
    /// The input weight, recurrent weight and their biases, gate blocks stacked along axis 0.
    param weight_ih, weight_hh, bias_ih, bias_hh;
    ///@}

    /// Adds the four to `store` as name("weight_ih"), …, drawn from uniform(−1/√H, 1/√H) as
    /// PyTorch does, in this order. weight_hh reads a recurrent state of `recurrent_size`
    /// features: H (0, the default), or an LSTM projection's P.
    static recurrent_params create(param_store& store, std::size_t gates, std::size_t input_size,
                                   std::size_t hidden_size, generator& g,
                                   const param_name& name = {}, std::size_t recurrent_size = 0)
    {
        UNFOLD_CHECK(hidden_size > 0, "a recurrent cell needs a hidden size of at least 1");
        const std::size_t G = gates * hidden_size;
        auto add = [&](const char* base, shape_type shape) {
            param p = store.add(name(base), zeros(shape));
            init::inverse_sqrt_uniform(p, hidden_size, g);
            return p;
        };
        return {add("weight_ih", {G, input_size}),
                add("weight_hh", {G, recurrent_size > 0 ? recurrent_size : hidden_size}),
                add("bias_ih", {G}), add("bias_hh", {G})};
    }
    /// H, from weight_hh (whose columns are the state it reads).
    std::size_t hidden_size() const { return weight_hh.shape()[1]; }
};

/// Applies f to the pairs of parts of two states and rebuilds the state.
template <class S, class F>
S zip_state(const S& a, const S& b, F&& f)
{
    auto pa = state_traits<S>::parts(a);
    const auto pb = state_traits<S>::parts(b);
    for (std::size_t k = 0; k < pa.size(); ++k)
        pa[k] = f(pa[k], pb[k]);
    return state_traits<S>::from_parts(pa);
}

} // namespace unfold
