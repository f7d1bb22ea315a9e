#pragma once
/// Recurrent (variational) dropout around any cell (Gal & Ghahramani 2016).
///
/// Note [Recurrent dropout]
/// Dropout on the outputs of a layer (layer_options::dropout) never touches the recurrence.
/// Variational dropout does, without destroying the memory: one mask per sequence on the step's
/// input x_t and one on the state h_{t−1} the step reads, both the same at every step, so a
/// dropped unit is dropped for the whole sequence instead of the state being shaken at every step.
/// with_recurrent_dropout draws the two masks for one batch (a row per sequence, kept with
/// probability 1 − p and scaled by 1/(1 − p), as dropout does) and returns the cell with them: a
/// cell like any other (Note [Cell contract]), for `unroll`, `check_cell` or a loop of `step`.
/// Only the h the step reads is masked: the state it returns, the layer's output, is not, and the
/// other parts of a state (an LSTM's c) are never masked. A cell with project() keeps its
/// whole-sequence input projection: the input mask is applied to the sequence before it, once.
/// In evaluation, use the cell itself; with both probabilities 0 the wrapped cell computes
/// exactly what the cell does.

#include <cstddef>

#include <unfold/framework/random.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/ops/mul.hpp>

namespace unfold
{

/// The dropout probabilities of with_recurrent_dropout, each in [0, 1).
struct recurrent_dropout_options
{
    real input = 0; ///< on x_t, the same mask at every step
    real state = 0; ///< on the h_{t−1} a step reads, the same mask at every step
};

/// A cell whose steps read x_t ⊙ input_mask and h_{t−1} ⊙ state_mask (Note [Recurrent dropout]).
template <class Cell>
struct recurrent_dropout_cell
{
    using state = typename Cell::state; ///< the cell's own state
    Cell cell;                          ///< the wrapped cell
    var input_mask;                     ///< (B, I), or empty: the input is not dropped
    var state_mask;                     ///< (B, H), or empty: the state is not dropped

    /// The cell's state sizes, when it declares them (Note [Cell contract]).
    template <class C = Cell, class = std::enable_if_t<has_state_sizes<C>::value>>
    auto state_sizes() const
    {
        return cell.state_sizes();
    }

    /// One step of the cell on the masked input and state.
    state operator()(tape& t, const var& x, const state& s) const
    {
        return step(cell, t, masked_input(x), masked_state(s));
    }
    /// The cell's projection of the masked input, x (..., B, I) (Note [Input projection]).
    template <class C = Cell, class = std::enable_if_t<has_projection<C>::value>>
    var project(tape& t, const var& x) const
    {
        return cell.project(t, masked_input(x));
    }
    /// One step of the cell on a projected (already masked) input and the masked state.
    template <class C = Cell, class = std::enable_if_t<has_projection<C>::value>>
    state operator()(tape& t, const projected& p, const state& s) const
    {
        return cell(t, p, masked_state(s));
    }

private:
    var masked_input(const var& x) const { return input_mask.defined() ? x * input_mask : x; }
    state masked_state(const state& s) const
    {
        if (!state_mask.defined())
            return s;
        auto parts = state_traits<state>::parts(s);
        parts[0] = parts[0] * state_mask;
        return state_traits<state>::from_parts(parts);
    }
};

/// `cell` with recurrent dropout masks for one batch of `batch` sequences, drawn from `g` and
/// recorded on `t` as constants: input (batch, input_size), state (batch, hidden_size), where
/// hidden_size is the features of h (an LSTM with projection: its P). A
/// probability of 0 draws no mask. Throws unfold::error for a probability outside [0, 1).
template <class Cell>
recurrent_dropout_cell<Cell> with_recurrent_dropout(const Cell& cell, tape& t, generator& g,
                                                    std::size_t batch, std::size_t input_size,
                                                    std::size_t hidden_size,
                                                    const recurrent_dropout_options& o)
{
    auto mask = [&](real p, std::size_t width, const char* what) {
        UNFOLD_CHECK(p >= 0 && p < 1, "recurrent dropout: the {} probability {} is not in [0, 1)",
                     what, p);
        if (p == 0)
            return var();
        return t.constant(tensor(g.bernoulli({batch, width}, 1 - p) / (1 - p)));
    };
    return {cell, mask(o.input, input_size, "input"), mask(o.state, hidden_size, "state")};
}

} // namespace unfold
