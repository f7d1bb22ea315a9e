#pragma once
/// The long short-term memory cell, with PyTorch nn.LSTM's parameters (gate order i, f, g, o):
///
///     i  = σ(W_ii x + b_ii + W_hi h + b_hi [+ p_i ⊙ c])
///     f  = σ(W_if x + b_if + W_hf h + b_hf [+ p_f ⊙ c])
///     g  = φ(W_ig x + b_ig + W_hg h + b_hg)
///     c' = f ⊙ c + i ⊙ g
///     o  = σ(W_io x + b_io + W_ho h + b_ho [+ p_o ⊙ c'])
///     h' = o ⊙ φ(c')
///
/// weight_ih = [W_ii; W_if; W_ig; W_io] (4H, I), weight_hh (4H, H), bias_ih and bias_hh (4H)
/// likewise. The bracketed peephole terms (Gers & Schmidhuber, 2000) are present when the cell
/// has peephole parameters peephole_i, peephole_f, peephole_o (each (H), diagonal); PyTorch has
/// none. σ (gates) and φ (state) are choosable. See Note [Cell contract] in models/cell.hpp.

#include <array>
#include <cmath>
#include <optional>
#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/slice.hpp>

namespace unfold
{

/// The state of an LSTM: output h and cell c, each (B, H).
struct lstm_state
{
    var h; ///< the output (B, H)
    var c; ///< the cell (B, H)
    /// {h, c} (Note [Cell contract]).
    std::array<var, 2> parts() const { return {h, c}; }
    /// The state {p[0], p[1]}.
    static lstm_state from_parts(const std::array<var, 2>& p) { return {p[0], p[1]}; }
};

/// Options of lstm_cell.
struct lstm_options
{
    activation gate = activations::sigmoid(); ///< σ, for i, f, o
    activation state = activations::tanh();   ///< φ, for g and the output φ(c')
    bool peepholes = false;                   ///< add peephole_i, peephole_f, peephole_o
    /// When set, the forget-gate blocks start as b_if = forget_bias, b_hf = 0 (so the forget gate
    /// starts mostly open, Jozefowicz et al. 2015) instead of random; the model is unchanged.
    std::optional<real> forget_bias;
};

/// One LSTM step (equations above), x (B, I), state {h, c} each (B, H).
struct lstm_cell
{
    using state = lstm_state; ///< {h, c}
    ///@{
    /// weight_ih (4H, I), weight_hh (4H, H), bias_ih and bias_hh (4H): the header's layout.
    param weight_ih, weight_hh, bias_ih, bias_hh;
    ///@}
    ///@{
    /// p_i, p_f, p_o, each (H); undefined handles: no peepholes.
    param peephole_i, peephole_f, peephole_o;
    ///@}
    activation sigma = activations::sigmoid(); ///< σ, for i, f, o
    activation phi = activations::tanh();      ///< φ, for g and the output φ(c')

    /// One step: {h', c'} from x (B, I) and s = {h, c}, recorded on `t`.
    state operator()(tape& t, const var& x, const state& s) const
    {
        return (*this)(t, projected{project(t, x)}, s);
    }
    /// W_i· x + b_i· + b_h· for every gate, x (..., I) -> (..., 4H) (Note [Input projection]):
    /// both biases go into the projection, one GEMM over the whole sequence.
    var project(tape& t, const var& x) const
    {
        return addmm_transposed(t[bias_ih] + t[bias_hh], x, t[weight_ih]);
    }
    /// The step given project(t, x).
    state operator()(tape& t, const projected& x, const state& s) const
    {
        const auto H = static_cast<std::ptrdiff_t>(weight_hh.shape()[1]);
        const var a = addmm_transposed(x, s.h, t[weight_hh]); // (B, 4H), one GEMM into x
        // Labels name the gate in anomaly messages (Note [Anomaly mode]).
        const var i = label("input gate", [&] { return gate(t, sigma, a, 0, peephole_i, s.c); });
        const var f = label("forget gate", [&] { return gate(t, sigma, a, 1, peephole_f, s.c); });
        const var g = label("cell candidate", [&] { return phi.on_columns(a, 2 * H, 3 * H); });
        const var c = label("cell state", [&] { return addcmul(f * s.c, i, g); }); // f⊙c + i⊙g
        const var o = label("output gate", [&] { return gate(t, sigma, a, 3, peephole_o, c); });
        return {label("hidden state", [&] { return o * phi(c); }), c};
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, drawn from
    /// uniform(−1/√H, 1/√H) as PyTorch does (see lstm_options for the forget bias).
    static lstm_cell create(param_store& store, std::size_t input_size, std::size_t hidden_size,
                            generator& g, lstm_options o = {}, const param_name& name = {})
    {
        const real k = real(1) / std::sqrt(real(hidden_size));
        const std::size_t G = 4 * hidden_size;
        lstm_cell c;
        c.weight_ih = add_uniform(store, name("weight_ih"), {G, input_size}, k, g);
        c.weight_hh = add_uniform(store, name("weight_hh"), {G, hidden_size}, k, g);
        c.bias_ih = add_uniform(store, name("bias_ih"), {G}, k, g);
        c.bias_hh = add_uniform(store, name("bias_hh"), {G}, k, g);
        if (o.peepholes)
        {
            c.peephole_i = add_uniform(store, name("peephole_i"), {hidden_size}, k, g);
            c.peephole_f = add_uniform(store, name("peephole_f"), {hidden_size}, k, g);
            c.peephole_o = add_uniform(store, name("peephole_o"), {hidden_size}, k, g);
        }
        if (o.forget_bias)
            for (std::size_t j = hidden_size; j < 2 * hidden_size; ++j)
            {
                c.bias_ih.value()(j) = *o.forget_bias;
                c.bias_hh.value()(j) = 0;
            }
        c.sigma = o.gate;
        c.phi = o.state;
        return c;
    }

private:
    /// σ(a_k + p ⊙ c) for gate block k of a (B, 4H), with the peephole term when p exists.
    static var gate(tape& t, const activation& sigma, const var& a, std::ptrdiff_t k,
                    const param& p, const var& c)
    {
        const auto H = static_cast<std::ptrdiff_t>(c.shape()[1]);
        if (!p.defined())
            return sigma.on_columns(a, k * H, (k + 1) * H);
        return sigma(slice_cols(a, k * H, (k + 1) * H) + t[p] * c);
    }
};

/// A (stacked, optionally bidirectional) LSTM layer like torch.nn.LSTM(input_size, hidden_size,
/// num_layers, bidirectional=…, dropout=…): parameters weight_ih_l{k}[_reverse], … in `store`;
/// its final state is {h_n, c_n}.
inline layer<lstm_cell> lstm_layer(param_store& store, std::size_t input_size,
                                   std::size_t hidden_size, generator& g, layer_options lo = {},
                                   lstm_options o = {})
{
    return layer_of<lstm_cell>("lstm", store, input_size, hidden_size, g, lo, o);
}

} // namespace unfold
