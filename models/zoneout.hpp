#pragma once
/// Zoneout around any cell (Krueger et al. 2017).
///
/// Note [Zoneout]
/// Where dropout sets units to zero, zoneout keeps them at their previous value: at every step each
/// unit of a state part keeps s_{t−1} with probability p and takes the cell's new value otherwise,
///     s_t = d_t ⊙ s_{t−1} + (1 − d_t) ⊙ cell(x_t, s_{t−1}),    d_t ~ Bernoulli(p), fresh per step,
/// so the gradient, like the state, flows through the kept units unchanged (identity paths through
/// time). In evaluation the mask is replaced by its expectation: s_t = p s_{t−1} + (1 − p) s̃_t.
/// Unlike recurrent dropout (Note [Recurrent dropout]) the mask changes at every step, so it is
/// drawn inside the step from the generator the wrapper holds. h (part 0) and the other parts of a
/// state (an LSTM's c) have their own probabilities; the paper's LSTM used 0.05 on h and 0.5 on c.

#include <cstddef>

#include <unfold/framework/random.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/scale_shift.hpp>

namespace unfold
{

/// The zoneout probabilities of with_zoneout, each in [0, 1).
struct zoneout_options
{
    real hidden = 0; ///< on h, the state's part 0
    real memory = 0; ///< on every other part (an LSTM's c)
};

/// A cell whose state units keep their previous values at random (Note [Zoneout]).
template <class Cell>
struct zoneout_cell
{
    using state = typename Cell::state; ///< the cell's own state
    Cell cell;                          ///< the wrapped cell
    zoneout_options p;                  ///< the probabilities of keeping a unit
    generator* g = nullptr;             ///< training: draws every step's masks; null: evaluation

    /// The cell's state sizes, when it declares them (Note [Cell contract]).
    template <class C = Cell, class = std::enable_if_t<has_state_sizes<C>::value>>
    auto state_sizes() const
    {
        return cell.state_sizes();
    }

    /// One step of the cell, each state unit then kept or updated.
    state operator()(tape& t, const var& x, const state& s) const
    {
        return zone(t, s, step(cell, t, x, s));
    }
    /// The cell's projection of the input, x (..., B, I) (Note [Input projection]).
    template <class C = Cell, class = std::enable_if_t<has_projection<C>::value>>
    var project(tape& t, const var& x) const
    {
        return cell.project(t, x);
    }
    /// One step of the cell on a projected input, each state unit then kept or updated.
    template <class C = Cell, class = std::enable_if_t<has_projection<C>::value>>
    state operator()(tape& t, const projected& x, const state& s) const
    {
        return zone(t, s, cell(t, x, s));
    }

private:
    state zone(tape& t, const state& previous, const state& updated) const
    {
        const auto before = state_traits<state>::parts(previous);
        auto after = state_traits<state>::parts(updated);
        for (std::size_t k = 0; k < after.size(); ++k)
        {
            const real keep = k == 0 ? p.hidden : p.memory;
            if (keep == 0)
                continue;
            if (g)
            {
                const tensor d = g->bernoulli(after[k].shape(), keep);
                after[k] = t.constant(d) * before[k] + t.constant(tensor(1 - d)) * after[k];
            }
            else
                after[k] = keep * before[k] + (1 - keep) * after[k];
        }
        return state_traits<state>::from_parts(after);
    }
};

/// `cell` with zoneout: in training (`g` not null, and it must outlive the wrapper's use) each
/// step draws its masks from `g`; in evaluation (`g` null) the expectation is used. Throws
/// unfold::error for a probability outside [0, 1).
template <class Cell>
zoneout_cell<Cell> with_zoneout(const Cell& cell, const zoneout_options& o, generator* g)
{
    for (const real p : {o.hidden, o.memory})
        UNFOLD_CHECK(p >= 0 && p < 1, "zoneout: the probability {} is not in [0, 1)", p);
    return {cell, o, g};
}

} // namespace unfold
