#pragma once
/// check_cell: the gradient check of a cell (Note [Cell contract]) over a short unroll, beside
/// check_op (framework/gradcheck.hpp) and, like it, in double precision only.

#include <cstddef>
#include <cstdint>
#include <vector>

#include <unfold/framework/gradcheck.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/unroll.hpp>

namespace unfold
{

/// How check_cell unrolls a cell.
struct cell_check_options
{
    std::size_t steps = 3;        ///< T
    std::size_t batch = 2;        ///< B
    real input_range = 1;         ///< x is drawn from U[−input_range, input_range)
    real state_range = real(0.5); ///< every part of s0 is drawn from U[−state_range, state_range)
    std::uint64_t seed = 1;       ///< seeds the draws of x and s0
    gradcheck_options check;      ///< the comparison (and the output weighting's seed)
};

/// Gradient-checks `cell` unrolled over o.steps steps from a random x (T, B, input_size) and a
/// random initial state (every part (B, hidden_size), or the part's own size when the cell
/// declares state_sizes()): the outputs are every step's h and every
/// part of the final state, and every element of x, of s0 and of `params` (the cell's parameters)
/// is perturbed. In double precision only (a float build refuses to compile it).
template <class Cell>
gradcheck_result check_cell(const Cell& cell, const std::vector<param>& params,
                            std::size_t input_size, std::size_t hidden_size,
                            const cell_check_options& o = {})
{
    UNFOLD_GRADCHECK_IN_DOUBLE(Cell);
    using S = typename Cell::state;
    generator g(o.seed);
    std::vector<tensor> inputs{
        g.uniform({o.steps, o.batch, input_size}, -o.input_range, o.input_range)};
    const state_sizes_type<S> sizes = state_sizes_of(cell, hidden_size);
    for (std::size_t k = 0; k < state_traits<S>::size; ++k)
        inputs.push_back(g.uniform({o.batch, sizes[k]}, -o.state_range, o.state_range));
    auto f = [&](tape& t, const std::vector<var>& xs) {
        typename state_traits<S>::parts_type p;
        for (std::size_t k = 0; k < p.size(); ++k)
            p[k] = xs[1 + k];
        const auto states = unroll(cell, t, xs[0], state_traits<S>::from_parts(p));
        std::vector<var> ys = outputs(states);
        for (const var& part : state_traits<S>::parts(states.back()))
            ys.push_back(part);
        return ys;
    };
    return gradcheck(f, inputs, params, o.check);
}

} // namespace unfold
