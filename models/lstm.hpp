#pragma once
/// The long short-term memory cell, with PyTorch nn.LSTM's parameters (gate order i, f, g, o):
///
///     i  = σ(W_ii x + b_ii + W_hi h + b_hi)
///     f  = σ(W_if x + b_if + W_hf h + b_hf)
///     g  = φ(W_ig x + b_ig + W_hg h + b_hg)
///     c' = f ⊙ c + i ⊙ g
///     o  = σ(W_io x + b_io + W_ho h + b_ho)
///     h' = o ⊙ φ(c')                         or, with a projection to P < H features,
///     h' = W_hr (o ⊙ φ(c'))                  (PyTorch's proj_size; then h is (B, P))
///
/// weight_ih = [W_ii; W_if; W_ig; W_io] (4H, I), weight_hh (4H, H) — (4H, P) with a projection —,
/// bias_ih and bias_hh (4H) likewise, weight_hr (P, H). σ (gates) and φ (state) are choosable.
/// The LSTM with peepholes is
/// peephole_lstm_cell (models/peephole_lstm.hpp). See Note [Cell contract] in models/cell.hpp.

#include <array>
#include <optional>
#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>

namespace unfold
{

/// The state of an LSTM: output h and cell c, each (B, H) (h is (B, P) with a projection).
struct lstm_state
{
    var h; ///< the output, (B, H) or (B, P)
    var c; ///< the cell, (B, H)
    /// {h, c} (Note [Cell contract]).
    std::array<var, 2> parts() const { return {h, c}; }
    /// The state of parts {h, c}.
    static lstm_state from_parts(const std::array<var, 2>& p) { return {p[0], p[1]}; }
};

/// Options of the LSTM cells.
struct lstm_options
{
    activation gate = activations::sigmoid(); ///< σ, for i, f, o
    activation state = activations::tanh();   ///< φ, for g and the output φ(c')
    /// When set, the forget-gate blocks start as b_if = forget_bias, b_hf = 0 (so the forget gate
    /// starts mostly open, Jozefowicz et al. 2015) instead of random; the model is unchanged.
    std::optional<real> forget_bias;
    /// P > 0: the output h is projected to P features by weight_hr (P, H), as PyTorch's
    /// nn.LSTM(proj_size=P); P must be smaller than H. 0: no projection.
    std::size_t proj_size = 0;
};

/// Sets the forget-gate block of an LSTM bias of shape (4H,), gate order (i, f, g, o) as in
/// PyTorch: elements [H, 2H) become `value`, the i, g and o blocks are left untouched.
/// PyTorch's LSTM has two biases, b_ih and b_hh, whose sum is the effective bias: for a total
/// forget bias of 1, call this with 1 on one of them and with 0 on the other (1 on both gives 2).
/// Throws unless `p` is 1-D with a size divisible by 4.
inline void lstm_forget_bias(param p, double value = 1)
{
    UNFOLD_CHECK(p.shape().size() == 1 && p.size() % 4 == 0 && p.size() > 0,
                 "lstm_forget_bias: parameter '{}' of shape {} is not an LSTM bias (4H,)", p.name(),
                 shape_str(p.shape()));
    const std::size_t h = p.size() / 4;
    real* data = p.value().data();
    for (std::size_t j = h; j < 2 * h; ++j)
        data[j] = real(value);
}

/// The four parameters of an LSTM cell, created as PyTorch does, with lstm_options' forget bias;
/// with a projection weight_hh is (4H, P) (the projection weight_hr itself is the cell's).
inline recurrent_params lstm_params(param_store& store, std::size_t input_size,
                                    std::size_t hidden_size, generator& g, const lstm_options& o,
                                    const param_name& name)
{
    UNFOLD_CHECK(o.proj_size == 0 || o.proj_size < hidden_size,
                 "lstm: proj_size {} must be smaller than hidden_size {} (as in PyTorch)",
                 o.proj_size, hidden_size);
    recurrent_params p = recurrent_params::create(store, 4, input_size, hidden_size, g, name,
                                                  o.proj_size > 0 ? o.proj_size : hidden_size);
    if (o.forget_bias)
    {
        lstm_forget_bias(p.bias_ih, *o.forget_bias);
        lstm_forget_bias(p.bias_hh, 0);
    }
    return p;
}

/// One LSTM step (equations above), x (B, I), state {h, c} each (B, H) (h (B, P) with a
/// projection).
struct lstm_cell : recurrent_params
{
    using state = lstm_state;                  ///< {h, c}
    activation sigma = activations::sigmoid(); ///< σ, the gates' activation
    activation phi = activations::tanh();      ///< φ, the state's activation
    param weight_hr; ///< W_hr (P, H) when the output is projected, else none

    /// H, the cell state's features.
    std::size_t hidden_size() const { return weight_hh.shape()[0] / 4; }
    /// {P, H} with a projection, else {H, H} (Note [Cell contract]).
    std::array<std::size_t, 2> state_sizes() const
    {
        return {weight_hr.defined() ? weight_hr.shape()[0] : hidden_size(), hidden_size()};
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
        const var a = addmm_transposed(x, s.h, t[weight_hh]); // every gate's pre-activation (B, 4H)
        const var i = gate("input gate", sigma, a, 0, 4);
        const var f = gate("forget gate", sigma, a, 1, 4);
        const var g = gate("cell candidate", phi, a, 2, 4);
        const var c = named("cell state", [&] { return addcmul(f * s.c, i, g); });
        const var o = gate("output gate", sigma, a, 3, 4);
        return {named("hidden state", [&] { return project_output(t, o * phi(c)); }), c};
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, drawn from
    /// uniform(−1/√H, 1/√H) as PyTorch does (see lstm_options for the forget bias).
    static lstm_cell create(param_store& store, std::size_t input_size, std::size_t hidden_size,
                            generator& g, lstm_options o = {}, const param_name& name = {})
    {
        lstm_cell cell{
            lstm_params(store, input_size, hidden_size, g, o, name), o.gate, o.state, {}};
        if (o.proj_size > 0)
        {
            cell.weight_hr = store.add(name("weight_hr"), zeros({o.proj_size, hidden_size}));
            init::inverse_sqrt_uniform(cell.weight_hr, hidden_size, g);
        }
        return cell;
    }

private:
    /// W_hr h with a projection, h itself without.
    var project_output(tape& t, const var& h) const
    {
        return weight_hr.defined() ? matmul_transposed(h, t[weight_hr]) : h;
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
