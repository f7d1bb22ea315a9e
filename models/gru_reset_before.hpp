#pragma once
/// The GRU of the original paper (Cho et al., 2014), which resets before the matmul:
///
///     r  = σ(W_ir x + b_ir + W_hr h + b_hr)
///     z  = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n  = φ(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
///     h' = (1 − z) ⊙ n + z ⊙ h  =  n + z ⊙ (h − n)
///
/// with PyTorch's parameter layout (models/gru.hpp), so a gru_cell can be run either way:
/// gru_reset_before_cell{gru}. See Note [Cell contract].

#include <string>

#include <unfold/models/cell.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/sub.hpp>

namespace unfold
{

/// One step of the reset-before GRU (equations above), x (B, I), h (B, H): a gru_cell (its
/// parameters, activations and input projection) with the other step.
struct gru_reset_before_cell : gru_cell
{
    /// The step given project(t, x): r and z from one GEMM over their rows of W_hh, n from another.
    state operator()(tape& t, const projected& x, const state& h) const
    {
        const auto H = std::ptrdiff_t(hidden_size());
        const var gx = x.value(); // [W_i· x + b_i·]
        const var gh =
            addmm_transposed(slice(t[bias_hh], 0, 0, 2 * H), h, slice_rows(t[weight_hh], 0, 2 * H));
        const var r = gate("reset gate", sigma, [&] { return block(gx, 0, 3) + block(gh, 0, 2); });
        const var z = gate("update gate", sigma, [&] { return block(gx, 1, 3) + block(gh, 1, 2); });
        const var n = gate("candidate", phi, [&] {
            return block(gx, 2, 3) + addmm_transposed(slice(t[bias_hh], 0, 2 * H, 3 * H), r * h,
                                                      slice_rows(t[weight_hh], 2 * H, 3 * H));
        });
        return named("hidden state", [&] { return addcmul(n, z, h - n); });
    }

    /// A cell with parameters added to `store` as name("weight_ih"), …, drawn from
    /// uniform(−1/√H, 1/√H) as PyTorch does.
    static gru_reset_before_cell create(param_store& store, std::size_t input_size,
                                        std::size_t hidden_size, generator& g, gru_options o = {},
                                        const param_name& name = {})
    {
        return {gru_cell::create(store, input_size, hidden_size, g, o, name)};
    }
};

/// A (stacked, optionally bidirectional) layer of reset-before GRU cells, named like nn.GRU's.
inline layer<gru_reset_before_cell> gru_reset_before_layer(param_store& store,
                                                           std::size_t input_size,
                                                           std::size_t hidden_size, generator& g,
                                                           layer_options lo = {},
                                                           gru_options o = {})
{
    return layer_of<gru_reset_before_cell>("gru", store, input_size, hidden_size, g, lo, o);
}

} // namespace unfold
