#pragma once
/// The benchmark's user-written LSTM cell and its layer: what a user composes from Unfold's
/// primitives, measured beside the built-in lstm_cell (Note [Cell contract] in models/cell.hpp).

#include <cmath>
#include <cstddef>

#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/sliced.hpp>
#include <unfold/ops/tanh.hpp>

namespace unfold::bench
{

/// A user-written LSTM cell, composed here from primitives (not the built-in lstm_cell): the input
/// weight w in (in, out) layout, one bias, each gate's activation applied to its block of the
/// pre-activation with sliced() (one node, no copy of the block on the tape). It declares project()
/// (Note [Input projection] in models/cell.hpp) like the built-in cells, and so gets the same
/// layer. The recurrent weight u is stored (out, in) = (4H, H), as PyTorch stores it: with u as
/// (H, 4H) OpenBLAS ran the per-step GEMMs h·u, gy·uᵀ and hᵀ·gy slower, enough to make this cell
/// slower than the built-in one (figures in bench/RESULTS.md); the one-GEMM projection over the
/// whole sequence runs as fast in either layout.
struct user_lstm_cell
{
    using state = lstm_state;
    param w, u, b;

    state operator()(tape& t, const var& x, const state& s) const
    {
        return (*this)(t, projected{project(t, x)}, s);
    }
    var project(tape& t, const var& x) const { return addmm(t[b], x, t[w]); }
    state operator()(tape& t, const projected& x, const state& s) const
    {
        const auto H = static_cast<std::ptrdiff_t>(u.shape()[1]);
        const var a = addmm_transposed(x, s.h, t[u]); // x + h uᵀ
        const var i = sliced(sigmoid_op{}, a, 0, H);  // σ(a[:, 0:H]) as one node
        const var f = sliced(sigmoid_op{}, a, H, 2 * H);
        const var g = sliced(tanh_op{}, a, 2 * H, 3 * H);
        const var o = sliced(sigmoid_op{}, a, 3 * H, 4 * H);
        const var c = addcmul(f * s.c, i, g); // f ⊙ c + i ⊙ g
        return {o * unfold::tanh(c), c};
    }
};

inline layer<user_lstm_cell> user_lstm_layer(param_store& store, std::size_t in, std::size_t hidden,
                                             generator& g)
{
    return layer<user_lstm_cell>(
        "user_lstm", store, in, hidden, {},
        [&g, hidden](param_store& s, std::size_t input_size, const param_name& n) {
            const real k = real(1) / std::sqrt(real(hidden));
            user_lstm_cell c;
            c.w = add_uniform(s, n("w"), {input_size, 4 * hidden}, k, g);
            c.u = add_uniform(s, n("u"), {4 * hidden, hidden}, k, g);
            c.b = add_uniform(s, n("b"), {4 * hidden}, k, g);
            return c;
        });
}

} // namespace unfold::bench
