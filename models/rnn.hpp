#pragma once
/// The Elman RNN cell and layer, with PyTorch nn.RNN's parameters:
///
///     h' = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)
///
/// weight_ih (H, I), weight_hh (H, H), bias_ih (H), bias_hh (H); φ = tanh by default, or relu,
/// elu, any activation. See Note [Cell contract] in models/cell.hpp.

#include <cmath>
#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/matmul.hpp>

namespace unfold
{

/// Options of rnn_cell.
struct rnn_options
{
    /// φ, the state activation (PyTorch's nonlinearity: tanh or relu).
    activation state = activations::tanh();
};

/// h' = φ(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh), x (B, I), h (B, H).
struct rnn_cell : recurrent_params // weight_ih (H, I), weight_hh (H, H), bias_ih and bias_hh (H)
{
    using state = var;                    ///< h (B, H)
    activation phi = activations::tanh(); ///< φ

    /// x W_ihᵀ + b_ih + b_hh, x (..., I) -> (..., H) (Note [Input projection]): both biases go
    /// into the projection, one GEMM over the whole sequence.
    var project(tape& t, const var& x) const
    {
        return addmm_transposed(t[bias_ih] + t[bias_hh], x, t[weight_ih]);
    }
    /// The step given project(t, x).
    state operator()(tape& t, const projected& x, const state& h) const
    {
        const var a =
            addmm_transposed(x, h, t[weight_hh]); // x W_ihᵀ + b + h W_hhᵀ, one GEMM into x
        return gate("activation", phi, a);
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, drawn from
    /// uniform(−1/√H, 1/√H) as PyTorch does.
    static rnn_cell create(param_store& store, std::size_t input_size, std::size_t hidden_size,
                           generator& g, rnn_options o = {}, const param_name& name = {})
    {
        return {recurrent_params::create(store, 1, input_size, hidden_size, g, name), o.state};
    }
};

/// A (stacked, optionally bidirectional) RNN layer like torch.nn.RNN(input_size, hidden_size,
/// num_layers, bidirectional=…, dropout=…): parameters weight_ih_l{k}[_reverse], … in `store`.
inline layer<rnn_cell> rnn_layer(param_store& store, std::size_t input_size,
                                 std::size_t hidden_size, generator& g, layer_options lo = {},
                                 rnn_options o = {})
{
    return layer_of<rnn_cell>("rnn", store, input_size, hidden_size, g, lo, o);
}

} // namespace unfold
