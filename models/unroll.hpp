#pragma once
/// Running a cell over a sequence: `unroll` (BPTT), plain or masked for variable-length batches,
/// and the helpers for truncated BPTT.
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
#include <type_traits>
#include <utility>
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
    forward, ///< t = 0 … T−1
    reverse  ///< t = T−1 … 0
};

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

/// A sequence as unroll takes it: a whole (T, B, F) var, or its T steps, each (B, F). Each form is
/// made from the other on demand (select or stack, recorded on the tape) and kept.
class input_sequence
{
public:
    /// A whole (T, B, F) sequence.
    input_sequence(var whole)
        : m_whole(std::move(whole))
    {
        UNFOLD_CHECK(m_whole.dimension() == 3 && m_whole.shape()[0] > 0,
                     "a sequence is (time, batch, features) with at least one step, not {}",
                     shape_str(m_whole.shape()));
    }
    /// A sequence given step by step: each (B, F), all with the same shape.
    input_sequence(std::vector<var> steps)
        : m_steps(std::move(steps))
    {
        UNFOLD_CHECK(!m_steps.empty(), "a sequence needs at least one step");
        for (std::size_t k = 0; k < m_steps.size(); ++k)
            UNFOLD_CHECK(m_steps[k].dimension() == 2 && m_steps[k].shape() == m_steps[0].shape(),
                         "step {} of a sequence has shape {}; every step must be (batch, "
                         "features) like step 0's {}",
                         k, shape_str(m_steps[k].shape()), shape_str(m_steps[0].shape()));
    }

    /// T.
    std::size_t length() const { return m_whole.defined() ? m_whole.shape()[0] : m_steps.size(); }
    /// B.
    std::size_t batch() const
    {
        return m_whole.defined() ? m_whole.shape()[1] : m_steps[0].shape()[0];
    }
    /// F.
    std::size_t features() const
    {
        return m_whole.defined() ? m_whole.shape()[2] : m_steps[0].shape()[1];
    }
    /// The whole (T, B, F) var (its steps stacked, once, if it was given by steps).
    const var& whole() const
    {
        if (!m_whole.defined())
            m_whole = stack(m_steps);
        return m_whole;
    }
    /// The T steps (selected from the whole, once, if it was given whole).
    const std::vector<var>& steps() const
    {
        if (m_steps.empty())
            m_steps = steps_of(m_whole);
        return m_steps;
    }
    /// "the sequence has shape (T, B, F)" or "the sequence's steps have shape (B, F)", for
    /// messages.
    std::string str() const
    {
        return m_whole.defined()
                   ? "the sequence has shape " + shape_str(m_whole.shape())
                   : "the sequence's steps have shape " + shape_str(m_steps[0].shape());
    }

private:
    mutable var m_whole;
    mutable std::vector<var> m_steps;
};

/// How unroll runs a sequence.
struct unroll_options
{
    direction dir = direction::forward; ///< forward or reverse in time
    /// Empty: every sequence has T steps. Else B lengths in [0, T]: a padded batch of
    /// variable-length sequences (Note [Masked sequences]).
    std::vector<std::size_t> lengths;

    unroll_options() = default;
    /// Unmasked, in direction `d` (so `unroll(cell, t, xs, s0, direction::reverse)` reads well).
    unroll_options(direction d)
        : dir(d)
    {}
    /// In direction `d`, masked by `lengths` when they are given.
    unroll_options(direction d, std::vector<std::size_t> lengths_)
        : dir(d)
        , lengths(std::move(lengths_))
    {}
};

namespace detail
{
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

/// True when unroll feeds `cell` projected steps (Note [Input projection]): the cell offers
/// project(), there is more than one step, and no recorder needs each step's input product on
/// its own, attributed to its step (Note [Gradient probe]).
template <class Cell>
bool projects(const tape& t, std::size_t steps)
{
    if constexpr (has_projection<Cell>::value)
        return steps > 1 && !t.records_contributions();
    return false;
}
} // namespace detail

namespace detail
{
/// The loop of unroll and unroll_projected: steps the cell over `projected_sequence` (T, B, G)
/// when it is defined, else over the steps of `xs`. `what` describes the input for messages.
template <class Cell>
std::vector<typename Cell::state> unroll_steps(const Cell& cell, tape& t, const input_sequence* xs,
                                               const var& projected_sequence, std::size_t T,
                                               std::size_t B, const std::string& what,
                                               const typename Cell::state& s0,
                                               const unroll_options& o)
{
    using state = typename Cell::state;
    for (const var& p : state_traits<state>::parts(s0))
        UNFOLD_CHECK(p.dimension() == 2 && p.shape()[0] == B,
                     "unroll: {} but the state has shape {}: the batch sizes differ", what,
                     shape_str(p.shape()));
    UNFOLD_CHECK(o.lengths.empty() || o.lengths.size() == B,
                 "unroll: {} lengths for a batch of {} sequences", o.lengths.size(), B);
    auto run_step = [&](std::size_t k, const state& s) -> state {
        if constexpr (has_projection<Cell>::value)
            if (projected_sequence.defined())
                return cell(t, projected{projected_sequence, std::ptrdiff_t(k)}, s);
        return step(cell, t, xs->steps()[k], s);
    };
    std::vector<state> states(T);
    state s = s0;
    for (std::size_t k = 0; k < T; ++k)
    {
        const std::size_t at_step = o.dir == direction::forward ? k : T - 1 - k;
        const step_scope at(at_step);
        if (o.lengths.empty())
        {
            states[at_step] = s = run_step(at_step, s);
            continue;
        }
        const auto [m, valid] = step_mask(o.lengths, at_step);
        if (valid == B)
            s = run_step(at_step, s);
        else if (valid > 0)
        {
            const var keep_new = t.constant(m);
            const var keep_old = t.constant(real(1) - m);
            s = zip_state(run_step(at_step, s), s, [&](const var& fresh, const var& old) {
                return keep_new * fresh + keep_old * old;
            });
        }
        states[at_step] = s;
    }
    return states;
}
} // namespace detail

/// Runs `cell` over the sequence `xs` ((T, B, I), or T steps (B, I)) from s0, recording every step
/// on `t` inside a step_scope, so that backward over the tape is BPTT. A cell with project() gets
/// the whole sequence projected by one call (Note [Input projection]). With o.lengths, a padded
/// batch of variable-length sequences: finished sequences carry their state (Note [Masked
/// sequences]); masked_outputs then gives the zero-padded outputs. Returns the T states in time
/// order: states[k] is the state after step k (in reverse, after steps T−1 … k). See
/// Note [Cell contract].
template <class Cell>
std::vector<typename Cell::state> unroll(const Cell& cell, tape& t, const input_sequence& xs,
                                         const typename Cell::state& s0,
                                         const unroll_options& o = {})
{
    var projected_sequence; // (T, B, G) when the cell projects
    if constexpr (has_projection<Cell>::value)
        if (detail::projects<Cell>(t, xs.length()))
            projected_sequence = cell.project(t, xs.whole());
    if (!projected_sequence.defined())
        (void)xs.steps(); // select every step before the loop: outside any step's site
    return detail::unroll_steps(cell, t, &xs, projected_sequence, xs.length(), xs.batch(), xs.str(),
                                s0, o);
}

/// unroll given the input already projected: `projected_sequence` (T, B, G) is what
/// cell.project(t, xs) gives for the sequence (Note [Input projection]), computed some other way —
/// e.g. projecting an embedding table once and gathering its rows, which equals projecting the
/// gathered embeddings because a projection acts on each row alone.
template <class Cell, class = std::enable_if_t<has_projection<Cell>::value>>
std::vector<typename Cell::state> unroll_projected(const Cell& cell, tape& t,
                                                   const var& projected_sequence,
                                                   const typename Cell::state& s0,
                                                   const unroll_options& o = {})
{
    UNFOLD_CHECK(projected_sequence.dimension() == 3 && projected_sequence.shape()[0] > 0,
                 "unroll_projected: a projected sequence is (time, batch, features) with at least "
                 "one step, not {}",
                 shape_str(projected_sequence.shape()));
    return detail::unroll_steps(
        cell, t, nullptr, projected_sequence, projected_sequence.shape()[0],
        projected_sequence.shape()[1],
        "the projected sequence has shape " + shape_str(projected_sequence.shape()), s0, o);
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
