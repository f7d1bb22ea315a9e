#pragma once
/// Layer-normalised LSTM and GRU (Ba, Kiros & Hinton 2016): the input and the recurrent
/// pre-activations are normalised per gate block, each with its own gain and bias, and the LSTM
/// also normalises its cell state before the output. LN₄ below normalises each of the four
/// H-blocks of a (B, 4H) pre-activation on its own (layer_norm with 4 groups):
///
///     a  = LN₄(W_ih x; γ_ih, β_ih) + LN₄(W_hh h; γ_hh, β_hh)      gate order i, f, g, o
///     i, f, o = σ(a_i), σ(a_f), σ(a_o)      g = φ(a_g)
///     c' = f ⊙ c + i ⊙ g
///     h' = o ⊙ φ(LN(c'; γ_c, β_c))
///
/// and for the GRU (gate order r, z, n, reset after the product as in PyTorch's nn.GRU):
///
///     u  = LN₃(W_ih x; γ_ih, β_ih)      v = LN₃(W_hh h; γ_hh, β_hh)
///     r  = σ(u_r + v_r)      z = σ(u_z + v_z)      n = φ(u_n + r ⊙ v_n)
///     h' = (1 − z) ⊙ n + z ⊙ h
///
/// β_ih and β_hh take the place of PyTorch's bias_ih and bias_hh (a bias after a normalisation
/// needs no other). Parameters, in PyTorch's layout and naming: weight_ih (G·H, I), weight_hh
/// (G·H, H), ln_ih_weight and ln_ih_bias (G·H), ln_hh_weight and ln_hh_bias (G·H), and for the
/// LSTM ln_c_weight and ln_c_bias (H) — nn.LayerNorm calls γ its weight and β its bias. The input
/// normalisation acts on each row alone, so it belongs to the projection over the whole sequence
/// (Note [Input projection]).

#include <cmath>
#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/layer_norm.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/sub.hpp>

namespace unfold
{

/// The parameters both layer-normalised cells share, for G gate blocks of H units.
struct layer_norm_params
{
    param weight_ih;       ///< W_ih (G·H, I), uniform(−1/√H, 1/√H) as PyTorch's
    param weight_hh;       ///< W_hh (G·H, H), likewise
    param ln_ih_weight;    ///< γ_ih (G·H), ones
    param ln_ih_bias;      ///< β_ih (G·H), uniform(−1/√H, 1/√H) as PyTorch's bias_ih
    param ln_hh_weight;    ///< γ_hh (G·H), ones
    param ln_hh_bias;      ///< β_hh (G·H), uniform(−1/√H, 1/√H) as PyTorch's bias_hh
    real eps = real(1e-5); ///< ε of every normalisation

    /// Adds the six to `store` as name("weight_ih"), …, in this order.
    static layer_norm_params create(param_store& store, std::size_t gates, std::size_t input_size,
                                    std::size_t hidden_size, generator& g,
                                    const param_name& name = {})
    {
        UNFOLD_CHECK(hidden_size > 0, "a recurrent cell needs a hidden size of at least 1");
        const std::size_t G = gates * hidden_size;
        const real bound = real(1) / std::sqrt(real(hidden_size));
        auto uniform = [&](const char* base, const shape_type& shape) {
            return add_uniform(store, name(base), shape, bound, g);
        };
        auto ones = [&](const char* base) { return store.add(name(base), full({G}, real(1))); };
        layer_norm_params p;
        p.weight_ih = uniform("weight_ih", {G, input_size});
        p.weight_hh = uniform("weight_hh", {G, hidden_size});
        p.ln_ih_weight = ones("ln_ih_weight");
        p.ln_ih_bias = uniform("ln_ih_bias", {G});
        p.ln_hh_weight = ones("ln_hh_weight");
        p.ln_hh_bias = uniform("ln_hh_bias", {G});
        return p;
    }
    /// H, from weight_hh.
    std::size_t hidden_size() const { return weight_hh.shape()[1]; }

    /// LN_G(W_ih x; γ_ih, β_ih), x (..., I) -> (..., G·H).
    var normalised_input(tape& t, const var& x) const
    {
        return layer_norm(matmul_transposed(x, t[weight_ih]), t[ln_ih_weight], t[ln_ih_bias], eps,
                          gates());
    }
    /// LN_G(W_hh h; γ_hh, β_hh), h (B, H) -> (B, G·H).
    var normalised_recurrent(tape& t, const var& h) const
    {
        return layer_norm(matmul_transposed(h, t[weight_hh]), t[ln_hh_weight], t[ln_hh_bias], eps,
                          gates());
    }

private:
    std::size_t gates() const { return weight_hh.shape()[0] / hidden_size(); }
};

/// One layer-normalised LSTM step (equations above), x (B, I), state {h, c} each (B, H).
struct layer_norm_lstm_cell : layer_norm_params
{
    using state = lstm_state;                  ///< {h, c}
    param ln_c_weight;                         ///< γ_c (H), ones
    param ln_c_bias;                           ///< β_c (H), zeros
    activation sigma = activations::sigmoid(); ///< σ, the gates' activation
    activation phi = activations::tanh();      ///< φ, the state's activation

    /// LN₄(W_ih x; γ_ih, β_ih), x (..., I) -> (..., 4H) (Note [Input projection]).
    var project(tape& t, const var& x) const { return normalised_input(t, x); }
    /// The step given project(t, x).
    state operator()(tape& t, const projected& x, const state& s) const
    {
        const var a = x.value() + normalised_recurrent(t, s.h); // (B, 4H)
        const var i = gate("input gate", sigma, a, 0, 4);
        const var f = gate("forget gate", sigma, a, 1, 4);
        const var g = gate("cell candidate", phi, a, 2, 4);
        const var c = named("cell state", [&] { return addcmul(f * s.c, i, g); });
        const var o = gate("output gate", sigma, a, 3, 4);
        return {named("hidden state",
                      [&] { return o * phi(layer_norm(c, t[ln_c_weight], t[ln_c_bias], eps)); }),
                c};
    }

    /// A cell with parameters added to `store` as name("weight_ih"), … (see layer_norm_params;
    /// lstm_options' forget bias sets the f block of β_ih, and zeros that of β_hh).
    static layer_norm_lstm_cell create(param_store& store, std::size_t input_size,
                                       std::size_t hidden_size, generator& g, lstm_options o = {},
                                       const param_name& name = {})
    {
        layer_norm_lstm_cell cell;
        static_cast<layer_norm_params&>(cell) =
            layer_norm_params::create(store, 4, input_size, hidden_size, g, name);
        cell.ln_c_weight = store.add(name("ln_c_weight"), full({hidden_size}, real(1)));
        cell.ln_c_bias = store.add(name("ln_c_bias"), zeros({hidden_size}));
        if (o.forget_bias)
        {
            lstm_forget_bias(cell.ln_ih_bias, *o.forget_bias);
            lstm_forget_bias(cell.ln_hh_bias, 0);
        }
        cell.sigma = o.gate;
        cell.phi = o.state;
        return cell;
    }
};

/// One layer-normalised GRU step (equations above), x (B, I), h (B, H).
struct layer_norm_gru_cell : layer_norm_params
{
    using state = var;                         ///< h (B, H)
    activation sigma = activations::sigmoid(); ///< σ
    activation phi = activations::tanh();      ///< φ

    /// LN₃(W_ih x; γ_ih, β_ih), x (..., I) -> (..., 3H) (Note [Input projection]).
    var project(tape& t, const var& x) const { return normalised_input(t, x); }
    /// The step given project(t, x).
    state operator()(tape& t, const projected& x, const state& h) const
    {
        const var u = x.value();
        const var v = normalised_recurrent(t, h);
        const var r = gate("reset gate", sigma, [&] { return block(u, 0, 3) + block(v, 0, 3); });
        const var z = gate("update gate", sigma, [&] { return block(u, 1, 3) + block(v, 1, 3); });
        const var n =
            gate("candidate", phi, [&] { return addcmul(block(u, 2, 3), r, block(v, 2, 3)); });
        return named("hidden state", [&] { return addcmul(n, z, h - n); });
    }

    /// A cell with parameters added to `store` as name("weight_ih"), … (see layer_norm_params).
    static layer_norm_gru_cell create(param_store& store, std::size_t input_size,
                                      std::size_t hidden_size, generator& g, gru_options o = {},
                                      const param_name& name = {})
    {
        layer_norm_gru_cell cell;
        static_cast<layer_norm_params&>(cell) =
            layer_norm_params::create(store, 3, input_size, hidden_size, g, name);
        cell.sigma = o.gate;
        cell.phi = o.state;
        return cell;
    }
};

/// A (stacked, optionally bidirectional) layer-normalised LSTM layer: parameters
/// weight_ih_l{k}[_reverse], …, ln_c_bias_l{k}[_reverse] in `store`; final state {h_n, c_n}.
inline layer<layer_norm_lstm_cell> layer_norm_lstm_layer(param_store& store, std::size_t input_size,
                                                         std::size_t hidden_size, generator& g,
                                                         layer_options lo = {}, lstm_options o = {})
{
    return layer_of<layer_norm_lstm_cell>("layer_norm_lstm", store, input_size, hidden_size, g, lo,
                                          o);
}

/// A (stacked, optionally bidirectional) layer-normalised GRU layer: parameters
/// weight_ih_l{k}[_reverse], …, ln_hh_bias_l{k}[_reverse] in `store`.
inline layer<layer_norm_gru_cell> layer_norm_gru_layer(param_store& store, std::size_t input_size,
                                                       std::size_t hidden_size, generator& g,
                                                       layer_options lo = {}, gru_options o = {})
{
    return layer_of<layer_norm_gru_cell>("layer_norm_gru", store, input_size, hidden_size, g, lo,
                                         o);
}

} // namespace unfold
