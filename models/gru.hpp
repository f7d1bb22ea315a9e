#pragma once
/// The gated recurrent unit, with PyTorch nn.GRU's parameters (gate order r, z, n) and its
/// convention of resetting after the matmul (as cuDNN does):
///
///     r  = σ(W_ir x + b_ir + W_hr h + b_hr)
///     z  = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n  = φ(W_in x + b_in + r ⊙ (W_hn h + b_hn))
///     h' = (1 − z) ⊙ n + z ⊙ h  =  n + z ⊙ (h − n)
///
/// weight_ih = [W_ir; W_iz; W_in] (3H, I), weight_hh = [W_hr; W_hz; W_hn] (3H, H), bias_ih and
/// bias_hh (3H) likewise. σ (the gate activation) and φ (the state activation) are choosable. The
/// original paper's convention, reset before the matmul, is gru_reset_before_cell
/// (models/gru_reset_before.hpp). See Note [Cell contract] in models/cell.hpp.

#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/sub.hpp>

namespace unfold
{

/// Options of the GRU cells.
struct gru_options
{
    activation gate = activations::sigmoid(); ///< σ, for r and z
    activation state = activations::tanh();   ///< φ, for n
};

/// One GRU step (equations above), x (B, I), h (B, H).
struct gru_cell : recurrent_params
{
    using state = var;                         ///< h (B, H)
    activation sigma = activations::sigmoid(); ///< σ
    activation phi = activations::tanh();      ///< φ

    /// [W_i· x + b_i·], x (..., I) -> (..., 3H) (Note [Input projection]). b_hr and b_hz stay in
    /// the step: addmm starts the recurrent product from them at no cost, and b_hn must stay
    /// inside r ⊙ (W_hn h + b_hn).
    var project(tape& t, const var& x) const
    {
        return addmm_transposed(t[bias_ih], x, t[weight_ih]);
    }
    /// The step given project(t, x).
    state operator()(tape& t, const projected& x, const state& h) const
    {
        const var gx = x.value();                                     // [W_i· x + b_i·]
        const var gh = addmm_transposed(t[bias_hh], h, t[weight_hh]); // [W_h· h + b_h·]
        const var r = gate("reset gate", sigma, [&] { return block(gx, 0, 3) + block(gh, 0, 3); });
        const var z = gate("update gate", sigma, [&] { return block(gx, 1, 3) + block(gh, 1, 3); });
        const var n =
            gate("candidate", phi, [&] { return addcmul(block(gx, 2, 3), r, block(gh, 2, 3)); });
        return named("hidden state", [&] { return addcmul(n, z, h - n); });
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, drawn from
    /// uniform(−1/√H, 1/√H) as PyTorch does.
    static gru_cell create(param_store& store, std::size_t input_size, std::size_t hidden_size,
                           generator& g, gru_options o = {}, const param_name& name = {})
    {
        return {recurrent_params::create(store, 3, input_size, hidden_size, g, name), o.gate,
                o.state};
    }
};

/// A (stacked, optionally bidirectional) GRU layer like torch.nn.GRU(input_size, hidden_size,
/// num_layers, bidirectional=…, dropout=…): parameters weight_ih_l{k}[_reverse], … in `store`.
inline layer<gru_cell> gru_layer(param_store& store, std::size_t input_size,
                                 std::size_t hidden_size, generator& g, layer_options lo = {},
                                 gru_options o = {})
{
    return layer_of<gru_cell>("gru", store, input_size, hidden_size, g, lo, o);
}

} // namespace unfold
