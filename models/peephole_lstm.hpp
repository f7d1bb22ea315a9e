#pragma once
/// The LSTM with peephole connections (Gers & Schmidhuber, 2000): the gates also see the cell,
/// through diagonal weights p_i, p_f, p_o (each (H)); PyTorch has none.
///
///     i  = σ(W_ii x + b_ii + W_hi h + b_hi + p_i ⊙ c)
///     f  = σ(W_if x + b_if + W_hf h + b_hf + p_f ⊙ c)
///     g  = φ(W_ig x + b_ig + W_hg h + b_hg)
///     c' = f ⊙ c + i ⊙ g
///     o  = σ(W_io x + b_io + W_ho h + b_ho + p_o ⊙ c')
///     h' = o ⊙ φ(c')
///
/// The other parameters are the LSTM's (models/lstm.hpp). See Note [Cell contract].

#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/mul.hpp>

namespace unfold
{

/// One step of the peephole LSTM (equations above), x (B, I), state {h, c} each (B, H): an
/// lstm_cell (its parameters, activations and input projection) with peepholes.
struct peephole_lstm_cell : lstm_cell
{
    ///@{
    /// The peephole weights p_i, p_f, p_o, each (H).
    param peephole_i, peephole_f, peephole_o;
    ///@}

    /// The step given project(t, x).
    state operator()(tape& t, const projected& x, const state& s) const
    {
        const var a = addmm_transposed(x, s.h, t[weight_hh]); // every gate's W x + b + W h (B, 4H)
        const var i =
            gate("input gate", sigma, [&] { return block(a, 0, 4) + t[peephole_i] * s.c; });
        const var f =
            gate("forget gate", sigma, [&] { return block(a, 1, 4) + t[peephole_f] * s.c; });
        const var g = gate("cell candidate", phi, a, 2, 4);
        const var c = named("cell state", [&] { return addcmul(f * s.c, i, g); });
        const var o =
            gate("output gate", sigma, [&] { return block(a, 3, 4) + t[peephole_o] * c; });
        return {named("hidden state", [&] { return o * phi(c); }), c};
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, then name("peephole_i"),
    /// …, all drawn from uniform(−1/√H, 1/√H) (see lstm_options for the forget bias).
    static peephole_lstm_cell create(param_store& store, std::size_t input_size,
                                     std::size_t hidden_size, generator& g, lstm_options o = {},
                                     const param_name& name = {})
    {
        const lstm_cell lstm = lstm_cell::create(store, input_size, hidden_size, g, o, name);
        auto peephole = [&](const char* base) {
            param w = store.add(name(base), zeros({hidden_size}));
            init::inverse_sqrt_uniform(w, hidden_size, g);
            return w;
        };
        return {lstm, peephole("peephole_i"), peephole("peephole_f"), peephole("peephole_o")};
    }
};

/// A (stacked, optionally bidirectional) layer of peephole LSTM cells, named like nn.LSTM's
/// (plus peephole_i_l{k}, …).
inline layer<peephole_lstm_cell> peephole_lstm_layer(param_store& store, std::size_t input_size,
                                                     std::size_t hidden_size, generator& g,
                                                     layer_options lo = {}, lstm_options o = {})
{
    return layer_of<peephole_lstm_cell>("lstm", store, input_size, hidden_size, g, lo, o);
}

} // namespace unfold
