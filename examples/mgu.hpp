#pragma once
// A user's recurrent cell: a minimal gated unit whose candidate uses the user's softsign op.
#include "softsign.hpp"

#include <unfold/unfold.hpp>

namespace example
{
using namespace unfold;

/// Minimal gated unit:  f  = σ(x W_fᵀ + h U_fᵀ + b_f)
///                      n  = softsign(x W_nᵀ + (f ⊙ h) U_nᵀ + b_n)
///                      h' = (1 − f) ⊙ h + f ⊙ n
struct mgu_cell
{
    using state = var;
    param w_f, u_f, b_f, w_n, u_n, b_n;

    state operator()(tape& t, const var& x, const state& h) const
    {
        const var f = sigmoid(matmul_transposed(x, t[w_f]) + matmul_transposed(h, t[u_f]) + t[b_f]);
        const var n =
            softsign(matmul_transposed(x, t[w_n]) + matmul_transposed(f * h, t[u_n]) + t[b_n]);
        return (1 - f) * h + f * n;
    }

    /// A cell with new parameters in `s`, named by `name` ("w_f_l0", ... by default) so that a
    /// layer<mgu_cell> can stack several.
    static mgu_cell create(param_store& s, std::size_t in, std::size_t hidden, generator& g,
                           const param_name& name = {})
    {
        const real k = real(1) / std::sqrt(real(hidden));
        return {add_uniform(s, name("w_f"), {hidden, in}, k, g),
                add_uniform(s, name("u_f"), {hidden, hidden}, k, g),
                add_uniform(s, name("b_f"), {hidden}, k, g),
                add_uniform(s, name("w_n"), {hidden, in}, k, g),
                add_uniform(s, name("u_n"), {hidden, hidden}, k, g),
                add_uniform(s, name("b_n"), {hidden}, k, g)};
    }
};
} // namespace example
