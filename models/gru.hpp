#pragma once
/// The gated recurrent unit, with PyTorch nn.GRU's parameters (gate order r, z, n):
///
///     r  = σ(W_ir x + b_ir + W_hr h + b_hr)
///     z  = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n  = φ(W_in x + b_in + r ⊙ (W_hn h + b_hn))      reset after the matmul (PyTorch, cuDNN)
///     n  = φ(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      reset before it (Cho et al., 2014)
///     h' = (1 − z) ⊙ n + z ⊙ h  =  n + z ⊙ (h − n)
///
/// weight_ih = [W_ir; W_iz; W_in] (3H, I), weight_hh = [W_hr; W_hz; W_hn] (3H, H), bias_ih and
/// bias_hh (3H) likewise. σ (the gate activation) and φ (the state activation) are choosable.
/// See Note [Cell contract] in models/cell.hpp.

#include <cmath>
#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/affine.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/sub.hpp>

namespace unfold
{

/// Where the reset gate multiplies the hidden state in a GRU's candidate n.
enum class gru_reset
{
    after_matmul, ///< r ⊙ (W_hn h + b_hn): PyTorch and cuDNN
    before_matmul ///< W_hn (r ⊙ h) + b_hn: the original paper
};

/// Options of gru_cell.
struct gru_options
{
    activation gate = activations::sigmoid(); ///< σ, for r and z
    activation state = activations::tanh();   ///< φ, for n
    /// Where r multiplies in n.
    gru_reset reset = gru_reset::after_matmul;
};

/// One GRU step (equations above), x (B, I), h (B, H).
struct gru_cell
{
    using state = var; ///< h (B, H)
    ///@{
    /// weight_ih (3H, I), weight_hh (3H, H), bias_ih and bias_hh (3H): the header's layout.
    param weight_ih, weight_hh, bias_ih, bias_hh;
    ///@}
    activation sigma = activations::sigmoid(); ///< σ, for r and z
    activation phi = activations::tanh();      ///< φ, for n
    gru_reset reset = gru_reset::after_matmul; ///< where r multiplies in n

    /// One step: h' from x (B, I) and h (B, H), recorded on `t`.
    state operator()(tape& t, const var& x, const state& h) const
    {
        return (*this)(t, projected{project(t, x)}, h);
    }
    /// [W_i· x + b_i·], x (..., I) -> (..., 3H) (Note [Input projection]).
    var project(tape& t, const var& x) const
    {
        return addmm_transposed(t[bias_ih], x, t[weight_ih]);
    }
    /// The step given project(t, x). b_hr and b_hz stay here, not in project(): the bias of the
    /// recurrent GEMM's result costs nothing (addmm starts from it), and b_hn must stay inside
    /// r ⊙ (W_hn h + b_hn), so folding would save no pass.
    state operator()(tape& t, const projected& x, const state& h) const
    {
        const std::size_t H = weight_hh.shape()[1];
        const var gx = x.value(); // [W_i· x + b_i·] (B, 3H)
        if (reset == gru_reset::after_matmul)
        {
            const var gh = addmm_transposed(t[bias_hh], h, t[weight_hh]); // [W_h· h + b_h·]
            // Labels name the gate in anomaly messages (Note [Anomaly mode]).
            const var r = label("reset gate",
                                [&] { return sigma(slice_cols(gx, 0, H) + slice_cols(gh, 0, H)); });
            const var z = label("update gate", [&] {
                return sigma(slice_cols(gx, H, 2 * H) + slice_cols(gh, H, 2 * H));
            });
            const var n = label("candidate", [&] {
                return phi(addcmul(slice_cols(gx, 2 * H, 3 * H), r, slice_cols(gh, 2 * H, 3 * H)));
            });
            return label("hidden state", [&] { return addcmul(n, z, h - n); });
        }
        const var w_hh = t[weight_hh];
        const var b_hh = t[bias_hh];
        const var gh = addmm_transposed(slice(b_hh, 0, 0, 2 * H), h, slice_rows(w_hh, 0, 2 * H));
        const var r = label("reset gate",
                            [&] { return sigma(slice_cols(gx, 0, H) + slice_cols(gh, 0, H)); });
        const var z = label("update gate", [&] {
            return sigma(slice_cols(gx, H, 2 * H) + slice_cols(gh, H, 2 * H));
        });
        const var n = label("candidate", [&] {
            return phi(slice_cols(gx, 2 * H, 3 * H) +
                       addmm_transposed(slice(b_hh, 0, 2 * H, 3 * H), r * h,
                                        slice_rows(w_hh, 2 * H, 3 * H)));
        });
        return label("hidden state", [&] { return addcmul(n, z, h - n); });
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, drawn from
    /// uniform(−1/√H, 1/√H) as PyTorch does.
    static gru_cell create(param_store& store, std::size_t input_size, std::size_t hidden_size,
                           generator& g, gru_options o = {}, const param_name& name = {})
    {
        const real k = real(1) / std::sqrt(real(hidden_size));
        const std::size_t G = 3 * hidden_size;
        gru_cell c;
        c.weight_ih = add_uniform(store, name("weight_ih"), {G, input_size}, k, g);
        c.weight_hh = add_uniform(store, name("weight_hh"), {G, hidden_size}, k, g);
        c.bias_ih = add_uniform(store, name("bias_ih"), {G}, k, g);
        c.bias_hh = add_uniform(store, name("bias_hh"), {G}, k, g);
        c.sigma = o.gate;
        c.phi = o.state;
        c.reset = o.reset;
        return c;
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
