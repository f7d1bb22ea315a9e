#pragma once
/// Running a cell over a sequence: `unroll` (BPTT), its masked variant for variable-length
/// batches, and the helpers for truncated BPTT.
///
/// Note [Masked sequences]
/// A batch of sequences of different lengths is padded to T steps; lengths[b] says how many steps
/// of sequence b are real. At step t, with m = [t < lengths[b]] of shape (B, 1),
///     s' = m ⊙ cell(x_t, s) + (1 − m) ⊙ s       (every part of the state)
///     y_t = m ⊙ h'
/// so a finished sequence carries its state unchanged to the end (its final state is the state
/// at its last valid step) and its padded steps output zeros, as PyTorch's pad_packed_sequence
/// gives them: they contribute no loss and no gradient. Run in reverse, a sequence carries its
/// initial state through its padding and starts at its own last valid step, as a packed reverse
/// RNN does. Steps where every sequence is valid skip the blend; steps where none is skip the cell.
///
/// Note [Truncated BPTT]
/// Backpropagating through a long sequence in chunks: run a chunk on a tape, backward, then carry
/// its last state into the next chunk *detached* — as constants on the next chunk's tape — so the
/// next backward stops at the chunk boundary. Either use a new tape:
///     tape next;  auto s = detach_state(next, states.back());
/// or reuse one tape, saving the values before clearing it:
///     auto saved = save_state(states.back());  t.clear();  auto s = saved.on(t);
/// Any var of a cleared (or destroyed) tape throws unfold::error when used, so backpropagating
/// into a released chunk is an error, never a silent read of freed memory (Note [Tape lifetime]).

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/stack.hpp>

namespace unfold
{

/// Which way a sequence is run: forward (t = 0 … T−1) or reverse (t = T−1 … 0).
enum class direction
{
    forward,
    reverse
};

namespace detail
{
template <class S>
void check_step(const char* who, std::size_t t, const var& x_t, const S& s)
{
    UNFOLD_CHECK(x_t.dimension() == 2, "{}: step {} has shape {}; a step must be (batch, features)",
                 who, t, shape_str(x_t.shape()));
    for (const var& p : state_traits<S>::parts(s))
        UNFOLD_CHECK(p.dimension() == 2 && p.shape()[0] == x_t.shape()[0],
                     "{}: step {} has shape {} but the state has shape {}: the batch sizes differ",
                     who, t, shape_str(x_t.shape()), shape_str(p.shape()));
}

/// The (B, 1) mask [t < lengths[b]] and how many of its entries are 1.
inline std::pair<tensor, std::size_t> step_mask(const std::vector<std::size_t>& lengths,
                                                std::size_t t)
{
    tensor m = zeros({lengths.size(), 1});
    std::size_t valid = 0;
    for (std::size_t b = 0; b < lengths.size(); ++b)
        if (t < lengths[b])
        {
            m(b, 0) = 1;
            ++valid;
        }
    return {m, valid};
}
} // namespace detail

/// The T steps (B, F) of a (T, B, F) sequence, as vars on its tape.
inline std::vector<var> steps_of(const var& xs)
{
    UNFOLD_CHECK(xs.dimension() == 3, "steps_of: a sequence is (time, batch, features), not {}",
                 shape_str(xs.shape()));
    std::vector<var> steps;
    for (std::size_t t = 0; t < xs.shape()[0]; ++t)
        steps.push_back(select(xs, t));
    return steps;
}

namespace detail
{
/// True when unroll feeds `cell` projected steps (Note [Input projection]): the cell offers
/// project(), there is more than one step, and no gradient probe needs each step's input product
/// on its own (Note [Gradient probe]).
template <class Cell>
bool projects(const tape& t, std::size_t steps)
{
    if constexpr (has_projection<Cell>::value)
        return steps > 1 && !t.attributes_steps();
    return false;
}

/// Step k's input as the cell takes it: the k-th (B, G) block of the projected sequence when
/// there is one, else xs[k] (B, I).
template <class Cell>
struct step_inputs
{
    const Cell& cell;
    std::vector<var> xs;
    var px; ///< (T, B, G), defined when projected

    /// Projects `whole` (T, B, I) when the cell can; otherwise keeps its steps.
    static step_inputs of(const Cell& cell, tape& t, const var& whole)
    {
        if (projects<Cell>(t, whole.shape()[0]))
            if constexpr (has_projection<Cell>::value)
                return {cell, {}, cell.project(t, whole)};
        return {cell, steps_of(whole), var()};
    }
    static step_inputs of(const Cell& cell, tape& t, const std::vector<var>& steps)
    {
        if (projects<Cell>(t, steps.size()))
            if constexpr (has_projection<Cell>::value)
                return {cell, {}, cell.project(t, stack(steps))};
        return {cell, steps, var()};
    }

    typename Cell::state step(tape& t, std::size_t k, const typename Cell::state& s) const
    {
        if constexpr (has_projection<Cell>::value)
            if (px.defined())
                return cell(t, projected{px, std::ptrdiff_t(k)}, s);
        return cell(t, xs[k], s);
    }
};

template <class S>
void check_sequence(const char* who, const var& xs, const S& s)
{
    UNFOLD_CHECK(xs.dimension() == 3 && xs.shape()[0] > 0,
                 "{}: a sequence is (time, batch, features) with at least one step, not {}", who,
                 shape_str(xs.shape()));
    for (const var& p : state_traits<S>::parts(s))
        UNFOLD_CHECK(p.dimension() == 2 && p.shape()[0] == xs.shape()[1],
                     "{}: the sequence has shape {} but the state has shape {}: the batch sizes "
                     "differ",
                     who, shape_str(xs.shape()), shape_str(p.shape()));
}

template <class Cell>
std::vector<typename Cell::state> unroll_inputs(const step_inputs<Cell>& in, tape& t,
                                                std::size_t T, const typename Cell::state& s0,
                                                direction dir)
{
    std::vector<typename Cell::state> states(T);
    typename Cell::state s = s0;
    for (std::size_t k = 0; k < T; ++k)
    {
        const std::size_t step = dir == direction::forward ? k : T - 1 - k;
        const step_scope at(step); // Note [Anomaly mode]
        s = in.step(t, step, s);
        states[step] = s;
    }
    return states;
}

template <class Cell>
std::vector<typename Cell::state>
unroll_masked_inputs(const step_inputs<Cell>& in, tape& t, std::size_t T,
                     const typename Cell::state& s0, const std::vector<std::size_t>& lengths,
                     direction dir)
{
    using state = typename Cell::state;
    const std::size_t B = state_traits<state>::parts(s0)[0].shape()[0];
    UNFOLD_CHECK(lengths.size() == B, "unroll_masked: {} lengths for a batch of {} sequences",
                 lengths.size(), B);
    std::vector<state> states(T);
    state s = s0;
    for (std::size_t k = 0; k < T; ++k)
    {
        const std::size_t step = dir == direction::forward ? k : T - 1 - k;
        const step_scope at(step); // Note [Anomaly mode]
        const auto [m, valid] = step_mask(lengths, step);
        if (valid == lengths.size())
            s = in.step(t, step, s);
        else if (valid > 0)
        {
            const var keep_new = t.constant(m);
            const var keep_old = t.constant(real(1) - m);
            s = zip_state(in.step(t, step, s), s, [&](const var& fresh, const var& old) {
                return keep_new * fresh + keep_old * old;
            });
        }
        states[step] = s;
    }
    return states;
}
} // namespace detail

/// Runs `cell` over the steps xs[t] (each (B, I)) from s0, recording every step on `t`.
/// Returns the T states in time order: states[k] is the state after step k (in reverse, after
/// steps T−1 … k). Backward over the tape is BPTT. See Note [Cell contract].
template <class Cell>
std::vector<typename Cell::state> unroll(const Cell& cell, tape& t, const std::vector<var>& xs,
                                         const typename Cell::state& s0,
                                         direction dir = direction::forward)
{
    for (std::size_t k = 0; k < xs.size(); ++k)
        detail::check_step("unroll", k, xs[k], s0);
    return detail::unroll_inputs(detail::step_inputs<Cell>::of(cell, t, xs), t, xs.size(), s0,
                                 dir);
}

/// unroll over a (T, B, I) sequence; a cell with project() projects it whole, without
/// splitting it into steps first.
template <class Cell>
std::vector<typename Cell::state> unroll(const Cell& cell, tape& t, const var& xs,
                                         const typename Cell::state& s0,
                                         direction dir = direction::forward)
{
    detail::check_sequence("unroll", xs, s0);
    return detail::unroll_inputs(detail::step_inputs<Cell>::of(cell, t, xs), t, xs.shape()[0],
                                 s0, dir);
}

/// unroll over a padded batch of variable-length sequences (Note [Masked sequences]):
/// lengths[b] ∈ [0, T] is the number of valid steps of sequence b. states[k] is the carried state
/// after step k; masked_outputs gives the zero-padded outputs.
template <class Cell>
std::vector<typename Cell::state> unroll_masked(const Cell& cell, tape& t,
                                                const std::vector<var>& xs,
                                                const typename Cell::state& s0,
                                                const std::vector<std::size_t>& lengths,
                                                direction dir = direction::forward)
{
    for (std::size_t k = 0; k < xs.size(); ++k)
        detail::check_step("unroll_masked", k, xs[k], s0);
    return detail::unroll_masked_inputs(detail::step_inputs<Cell>::of(cell, t, xs), t, xs.size(),
                                        s0, lengths, dir);
}

/// unroll_masked over a (T, B, I) sequence.
template <class Cell>
std::vector<typename Cell::state> unroll_masked(const Cell& cell, tape& t, const var& xs,
                                                const typename Cell::state& s0,
                                                const std::vector<std::size_t>& lengths,
                                                direction dir = direction::forward)
{
    detail::check_sequence("unroll_masked", xs, s0);
    return detail::unroll_masked_inputs(detail::step_inputs<Cell>::of(cell, t, xs), t,
                                        xs.shape()[0], s0, lengths, dir);
}

/// The outputs h_k of every state, each (B, H).
template <class S>
std::vector<var> outputs(const std::vector<S>& states)
{
    std::vector<var> ys;
    for (const S& s : states)
        ys.push_back(hidden(s));
    return ys;
}

/// The outputs of a masked unroll: h_k where step k is valid, 0 where it is padding
/// (Note [Masked sequences]).
template <class S>
std::vector<var> masked_outputs(tape& t, const std::vector<S>& states,
                                const std::vector<std::size_t>& lengths)
{
    std::vector<var> ys;
    for (std::size_t k = 0; k < states.size(); ++k)
    {
        const var h = hidden(states[k]);
        const auto [m, valid] = detail::step_mask(lengths, k);
        if (valid == lengths.size())
            ys.push_back(h);
        else if (valid == 0)
            ys.push_back(t.constant(zeros(h.shape())));
        else
            ys.push_back(t.constant(m) * h);
    }
    return ys;
}

/// The values of a state, kept outside any tape: they survive tape::clear() and the tape's end.
/// See Note [Truncated BPTT].
template <class S>
struct saved_state
{
    std::array<tensor, state_traits<S>::size> values; ///< the parts' values, h first

    /// The saved state recorded on `t` as constants: gradients stop here.
    S on(tape& t) const
    {
        typename state_traits<S>::parts_type p;
        for (std::size_t k = 0; k < values.size(); ++k)
            p[k] = t.constant(values[k]);
        return state_traits<S>::from_parts(p);
    }
};

/// Copies the values of every part of `s`.
template <class S>
saved_state<S> save_state(const S& s)
{
    saved_state<S> saved;
    const auto p = state_traits<S>::parts(s);
    for (std::size_t k = 0; k < p.size(); ++k)
        saved.values[k] = p[k].value();
    return saved;
}

/// `s` carried onto tape `to` as constants (a new tape for the next chunk of truncated BPTT):
/// the next chunk's backward stops at this boundary. See Note [Truncated BPTT].
template <class S>
S detach_state(tape& to, const S& s)
{
    return save_state(s).on(to);
}

/// The same for a layer's initial/final state, one var per part, each (L·D, B, H).
inline std::vector<var> detach_state(tape& to, const std::vector<var>& s)
{
    std::vector<var> out;
    for (const var& v : s)
        out.push_back(to.constant(v.value()));
    return out;
}

} // namespace unfold
