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

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <unfold/framework/tape.hpp>
#include <unfold/models/bptt_memory.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/select.hpp>
#include <unfold/ops/slice.hpp>
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

    /// A sequence of T steps (B, F) recorded on demand: chunk(first, count) records steps
    /// [first, first + count) as one (count, B, F) var, e.g. an embedding's gather of those
    /// tokens. A cell that projects its input asks for one chunk of steps at a time, inside the
    /// steps' segments, so that under a memory policy the input of a long sequence never exists
    /// whole (Note [Memory policies]); other cells ask for the whole sequence.
    input_sequence(std::size_t T, std::size_t B, std::size_t F,
                   std::function<var(std::size_t first, std::size_t count)> chunk)
        : m_chunk(std::move(chunk))
        , m_shape{T, B, F}
    {
        UNFOLD_CHECK(T > 0 && m_chunk, "a sequence given by chunks needs at least one step and a "
                                       "function that records them");
    }

    /// True for a sequence given by chunks that has not been recorded whole.
    bool chunked() const { return m_chunk && !m_whole.defined(); }
    /// T.
    std::size_t length() const
    {
        return m_chunk ? m_shape[0] : m_whole.defined() ? m_whole.shape()[0] : m_steps.size();
    }
    /// B.
    std::size_t batch() const
    {
        return m_chunk             ? m_shape[1]
               : m_whole.defined() ? m_whole.shape()[1]
                                   : m_steps[0].shape()[0];
    }
    /// F.
    std::size_t features() const
    {
        return m_chunk             ? m_shape[2]
               : m_whole.defined() ? m_whole.shape()[2]
                                   : m_steps[0].shape()[1];
    }
    /// The whole (T, B, F) var (its steps stacked, or its chunk of all T steps recorded, once).
    const var& whole() const
    {
        if (!m_whole.defined())
            m_whole = m_chunk ? checked_chunk(0, length()) : stack(m_steps);
        return m_whole;
    }
    /// The T steps (selected from the whole, once, if it was given whole).
    const std::vector<var>& steps() const
    {
        if (m_steps.empty())
            m_steps = steps_of(whole());
        return m_steps;
    }
    /// Steps [first, first + count) as one (count, B, F) var: the whole sequence when that is
    /// all of it, else a slice of the whole or a stack of the steps, in whichever form it was
    /// given (recorded on the tape).
    var part(std::size_t first, std::size_t count) const
    {
        if (m_chunk && !m_whole.defined())
            return checked_chunk(first, count);
        if (first == 0 && count == length())
            return whole();
        if (m_whole.defined())
            return slice(m_whole, 0, static_cast<std::ptrdiff_t>(first),
                         static_cast<std::ptrdiff_t>(first + count));
        return stack(
            std::vector<var>(m_steps.begin() + static_cast<std::ptrdiff_t>(first),
                             m_steps.begin() + static_cast<std::ptrdiff_t>(first + count)));
    }
    /// "the sequence has shape (T, B, F)" or "the sequence's steps have shape (B, F)", for
    /// messages.
    std::string str() const
    {
        if (m_chunk)
            return fmt::format("the sequence of {} steps has steps of shape ({}, {})", m_shape[0],
                               m_shape[1], m_shape[2]);
        return m_whole.defined()
                   ? "the sequence has shape " + shape_str(m_whole.shape())
                   : "the sequence's steps have shape " + shape_str(m_steps[0].shape());
    }

private:
    /// chunk(first, count), checked to have the shape it promised.
    var checked_chunk(std::size_t first, std::size_t count) const
    {
        const var c = m_chunk(first, count);
        UNFOLD_CHECK(c.shape() == shape_type({count, m_shape[1], m_shape[2]}),
                     "a sequence's chunk of steps [{}, {}) has shape {}, not ({}, {}, {})", first,
                     first + count, shape_str(c.shape()), count, m_shape[1], m_shape[2]);
        return c;
    }

    mutable var m_whole;
    mutable std::vector<var> m_steps;
    std::function<var(std::size_t, std::size_t)> m_chunk;
    std::array<std::size_t, 3> m_shape{};
};

/// How unroll runs a sequence.
struct unroll_options
{
    direction dir = direction::forward; ///< forward or reverse in time
    /// Empty: every sequence has T steps. Else B lengths in [0, T]: a padded batch of
    /// variable-length sequences (Note [Masked sequences]).
    std::vector<std::size_t> lengths;
    /// What BPTT keeps of the steps (Note [Memory policies]); everything by default.
    bptt_memory memory;

    unroll_options() = default;
    /// Unmasked, in direction `d` (so `unroll(cell, t, xs, s0, direction::reverse)` reads well).
    unroll_options(direction d)
        : dir(d)
    {}
    /// In direction `d`, masked by `lengths` when they are given.
    unroll_options(direction d, std::vector<std::size_t> lengths_, bptt_memory memory_ = {})
        : dir(d)
        , lengths(std::move(lengths_))
        , memory(memory_)
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
/// The rows of input a projection GEMM covers at most: a longer sequence is projected in chunks
/// of ⌊projection_rows / B⌋ steps, each just before its steps, so that a memory policy can drop a
/// chunk's projection once its steps are done (Note [Memory policies]). Every policy projects
/// the same chunks, so the weight gradients sum the same chunk products in the same order.
constexpr std::size_t projection_rows = 256;

/// How unroll feeds a cell its steps: raw steps it projects in chunks, raw steps one at a time,
/// or steps already projected (unroll_projected).
enum class step_input
{
    chunks,
    raw,
    projected
};

/// What one step of `cell` records (Note [Memory policies]): three steps from a zero state shaped
/// like s0, on a scratch tape, over an input of `features` per sequence fed as `how`.
template <class Cell>
step_profile profile_step(const Cell& cell, std::size_t B, std::size_t features, step_input how,
                          const typename Cell::state& s0)
{
    using state = typename Cell::state;
    tape dry;
    typename state_traits<state>::parts_type parts;
    const auto given = state_traits<state>::parts(s0);
    step_profile p;
    for (std::size_t k = 0; k < parts.size(); ++k)
    {
        parts[k] = dry.constant(zeros(given[k].shape()));
        p.state += parts[k].size() * sizeof(real);
    }
    p.output = parts[0].size() * sizeof(real);
    state s = state_traits<state>::from_parts(parts);
    p.input = B * features * sizeof(real);
    const var x = dry.constant(zeros({3, B, features}));
    var projection;
    if constexpr (has_projection<Cell>::value)
        if (how == step_input::chunks)
        {
            projection = cell.project(dry, x);
            p.projection = projection.size() * sizeof(real) / 3;
        }
    auto run_step = [&](std::size_t k) -> state {
        if constexpr (has_projection<Cell>::value)
        {
            if (how == step_input::chunks)
                return cell(dry, projected{projection, std::ptrdiff_t(k)}, s);
            if (how == step_input::projected)
                return cell(dry, projected{x, std::ptrdiff_t(k)}, s);
        }
        return unfold::step(cell, dry, select(x, std::ptrdiff_t(k)), s);
    };
    s = run_step(0);
    const std::size_t from = dry.size(), before = dry.bytes_held();
    s = run_step(1);
    const std::size_t to = dry.size();
    p.step = dry.bytes_held() - before;
    p.gemm = dry.value_bytes(from, to, true);
    s = run_step(2); // what reads step 1's values
    dry.drop_unread(from, to, {});
    p.read = dry.value_bytes(from, to);
    if (projection.defined())
    {
        dry.drop_unread(projection.index(), projection.index() + 1, {});
        p.projection_read = dry.value_bytes(projection.index(), projection.index() + 1) > 0;
    }
    p.parameters = dry.parameter_bytes();
    // Backward reuses one step's gradient buffers (Note [Released gradients]) and sums the
    // parameters' gradients in leaf slots of its own only where they are not zero already (Note
    // [Gradient accumulation]); a backward here would add into the parameters' gradients.
    p.gradients = p.step + dry.parameter_gradient_bytes();
    return p;
}

/// The loop of unroll and unroll_projected: steps the cell over `projected_sequence` (T, B, G)
/// when it is defined, over projected chunks of `xs` when `project_chunks`, else over the steps
/// of `xs`. `what` describes the input for messages; `each_step`, when set, is called after every
/// step with its time index and new state, inside the step's segment.
template <class Cell>
std::vector<typename Cell::state> unroll_steps(
    const Cell& cell, tape& t, const input_sequence* xs, const var& projected_sequence,
    bool project_chunks, std::size_t T, std::size_t B, const std::string& what,
    const typename Cell::state& s0, const unroll_options& o,
    const std::function<void(std::size_t, const typename Cell::state&)>& each_step = {})
{
    using state = typename Cell::state;
    for (const var& p : state_traits<state>::parts(s0))
        UNFOLD_CHECK(p.dimension() == 2 && p.shape()[0] == B,
                     "unroll: {} but the state has shape {}: the batch sizes differ", what,
                     shape_str(p.shape()));
    UNFOLD_CHECK(o.lengths.empty() || o.lengths.size() == B,
                 "unroll: {} lengths for a batch of {} sequences", o.lengths.size(), B);
    bptt_memory memory = o.memory;
    if (memory.how == bptt_memory::kind::budget)
    {
        const std::size_t features = xs ? xs->features() : projected_sequence.shape()[2];
        const step_input how = !xs              ? step_input::projected
                               : project_chunks ? step_input::chunks
                                                : step_input::raw;
        step_profile profile = profile_step(cell, B, features, how, s0);
        profile.input_whole = !(xs && xs->chunked());
        memory = plan_bptt(profile, T, std::max<std::size_t>(1, projection_rows / B), o.memory,
                           !each_step)
                     .policy;
    }
    segmenter segments(t, memory, T); // Note [Memory policies]
    const std::size_t chunk_steps = std::max<std::size_t>(1, projection_rows / B);
    var chunk;                   // the projection of the steps from chunk_first on
    std::size_t chunk_first = 0; // in time
    // A finished chunk's projection: a policy recomputes it if backward needs it; keeping
    // everything keeps it only if backward reads it (the built-in cells' backward does not).
    var chunk_input; // the steps it projects: a slice or a stack, cheap to recompute
    const std::size_t first_node = t.size();
    auto release_chunk = [&] {
        if (segments.active())
            t.drop_value(chunk);
        else
            t.drop_unread(chunk.index(), chunk.index() + 1, {});
        if (chunk_input.index() >= first_node) // recorded here, not the caller's
            t.drop_value(chunk_input);
    };
    auto project_chunk = [&](std::size_t k) {
        if constexpr (has_projection<Cell>::value)
        {
            if (!project_chunks || k % chunk_steps != 0)
                return;
            if (chunk.defined())
                release_chunk(); // its steps are done
            const std::size_t n = std::min(chunk_steps, T - k);
            chunk_first = o.dir == direction::forward ? k : T - k - n;
            chunk_input = xs->part(chunk_first, n);
            chunk = cell.project(t, chunk_input);
        }
    };
    auto run_step = [&](std::size_t at_step, const state& s) -> state {
        if constexpr (has_projection<Cell>::value)
        {
            if (project_chunks)
                return cell(t, projected{chunk, std::ptrdiff_t(at_step - chunk_first)}, s);
            if (projected_sequence.defined())
                return cell(t, projected{projected_sequence, std::ptrdiff_t(at_step)}, s);
        }
        return step(cell, t, xs->steps()[at_step], s);
    };
    std::vector<state> states(T);
    state s = s0;
    for (std::size_t k = 0; k < T; ++k)
    {
        const std::size_t at_step = o.dir == direction::forward ? k : T - 1 - k;
        segments.begin_step(k);
        project_chunk(k);
        const step_scope at(at_step);
        if (o.lengths.empty())
            s = run_step(at_step, s);
        else if (const auto [m, valid] = step_mask(o.lengths, at_step); valid == B)
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
        if (each_step)
            each_step(at_step, s);
        else // the caller reads every output after the loop
            segments.keep(hidden(s));
        if (chunk.defined())
            segments.keep(chunk); // the chunk's next steps read it
        segments.end_step(k);
    }
    if (chunk.defined())
        release_chunk();
    const auto final_parts = state_traits<state>::parts(s);
    segments.finish(std::vector<var>(final_parts.begin(), final_parts.end()));
    return states;
}
} // namespace detail

/// Runs `cell` over the sequence `xs` ((T, B, I), or T steps (B, I)) from s0, recording every step
/// on `t` inside a step_scope, so that backward over the tape is BPTT. A cell with project() gets
/// the sequence projected by one call per chunk of steps (Note [Input projection]). With
/// o.lengths, a padded batch of variable-length sequences: finished sequences carry their state
/// (Note [Masked sequences]); masked_outputs then gives the zero-padded outputs. o.memory says
/// what BPTT keeps (Note [Memory policies]). Returns the T states in time order: states[k] is the
/// state after step k (in reverse, after steps T−1 … k). See Note [Cell contract].
template <class Cell>
std::vector<typename Cell::state> unroll(const Cell& cell, tape& t, const input_sequence& xs,
                                         const typename Cell::state& s0,
                                         const unroll_options& o = {})
{
    const bool projects = detail::projects<Cell>(t, xs.length());
    if (!projects)
        (void)xs.steps(); // select every step before the loop: outside any step's site
    return detail::unroll_steps(cell, t, &xs, var(), projects, xs.length(), xs.batch(), xs.str(),
                                s0, o);
}

/// The plan of `memory` for unrolling `cell` (hidden size H) over T steps of B sequences of I
/// features, before running it: the policy a budget resolves to, the tape's predicted peak and
/// the steps backward recomputes (Note [Memory policies]). `outputs_kept`: the outputs are read
/// after the loop (unroll without each_step); `input_chunks`: the input is an input_sequence given
/// by chunks, never on the tape whole. The parameters whose gradients are not zero now are
/// counted with gradient slots of the tape's own (Note [Gradient accumulation]): plan after
/// zero_grad(), as a training step runs.
template <class Cell>
bptt_plan plan_unroll(const Cell& cell, std::size_t T, std::size_t B, std::size_t I, std::size_t H,
                      const bptt_memory& memory, bool outputs_kept = true,
                      bool input_chunks = false)
{
    using state = typename Cell::state;
    tape dry;
    const state s0 = zero_state<state>(dry, B, state_sizes_of(cell, H));
    const detail::step_input how =
        has_projection<Cell>::value && T > 1 ? detail::step_input::chunks : detail::step_input::raw;
    step_profile profile = detail::profile_step(cell, B, I, how, s0);
    profile.input_whole = !input_chunks;
    return plan_bptt(profile, T, std::max<std::size_t>(1, detail::projection_rows / B), memory,
                     outputs_kept);
}

/// unroll that calls each_step(k, state after step k) right after step k, inside its segment:
/// whatever the step's output feeds (an output layer, a loss) recorded there is part of the
/// step, so a memory policy need not keep the outputs until the loop ends — only the states at
/// segment ends (Note [Memory policies]). The returned states are recomputed if read later.
template <class Cell, class EachStep>
std::vector<typename Cell::state> unroll(const Cell& cell, tape& t, const input_sequence& xs,
                                         const typename Cell::state& s0, const unroll_options& o,
                                         EachStep each_step)
{
    const bool projects = detail::projects<Cell>(t, xs.length());
    if (!projects)
        (void)xs.steps();
    return detail::unroll_steps(
        cell, t, &xs, var(), projects, xs.length(), xs.batch(), xs.str(), s0, o,
        std::function<void(std::size_t, const typename Cell::state&)>(std::move(each_step)));
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
        cell, t, nullptr, projected_sequence, false, projected_sequence.shape()[0],
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
