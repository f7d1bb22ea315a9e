#pragma once
/// The benchmark's layer-normalised LSTM as a user writes it from primitive ops: the equations of
/// models/layer_norm_cells.hpp (Ba et al. 2016), with each normalisation composed of means,
/// a square root and broadcasting divisions instead of the layer_norm op. Measured beside the
/// built-in LSTM: what the generic op path costs a cell the library does not ship.

#include <cmath>
#include <cstddef>

#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/div.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/reshape.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/sliced.hpp>
#include <unfold/ops/sqrt.hpp>
#include <unfold/ops/sub.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/tanh.hpp>

namespace unfold::bench
{

/// (v − mean v) / √(var v + ε) ⊙ γ + β over the last axis of v, from primitives.
inline var composed_layer_norm(const var& v, const var& gain, const var& bias)
{
    const var centred = v - mean(v, -1, true);
    const var spread = sqrt(mean(centred * centred, -1, true) + real(1e-5));
    return centred / spread * gain + bias;
}

/// composed_layer_norm of each of the four H-blocks of a (..., 4H) pre-activation on its own.
inline var composed_layer_norm_4(const var& a, const var& gain, const var& bias)
{
    shape_type blocks = a.shape();
    const std::size_t H = blocks.back() / 4;
    blocks.back() = 4;
    blocks.push_back(H);
    return reshape(composed_layer_norm(reshape(a, blocks), gain, bias), a.shape());
}

/// A user's layer-normalised LSTM cell: a = LN₄(x W_ihᵀ) + LN₄(h W_hhᵀ), c' = f ⊙ c + i ⊙ g,
/// h' = o ⊙ tanh(LN(c')). The input's normalisation acts on each row alone, so it is part of the
/// whole-sequence projection (Note [Input projection]).
struct user_layer_norm_lstm_cell
{
    using state = lstm_state;
    param w_ih, w_hh, g_ih, b_ih, g_hh, b_hh, g_c, b_c;

    state operator()(tape& t, const var& x, const state& s) const
    {
        return (*this)(t, projected{project(t, x)}, s);
    }
    var project(tape& t, const var& x) const
    {
        return composed_layer_norm_4(matmul_transposed_rows(x, t[w_ih]), t[g_ih], t[b_ih]);
    }
    state operator()(tape& t, const projected& x, const state& s) const
    {
        const auto H = static_cast<std::ptrdiff_t>(w_hh.shape()[1]);
        const var a =
            x.value() + composed_layer_norm_4(matmul_transposed(s.h, t[w_hh]), t[g_hh], t[b_hh]);
        const var i = sliced(sigmoid_op{}, a, 0, H);
        const var f = sliced(sigmoid_op{}, a, H, 2 * H);
        const var g = sliced(tanh_op{}, a, 2 * H, 3 * H);
        const var o = sliced(sigmoid_op{}, a, 3 * H, 4 * H);
        const var c = addcmul(f * s.c, i, g); // f ⊙ c + i ⊙ g
        return {o * unfold::tanh(composed_layer_norm(c, t[g_c], t[b_c])), c};
    }

private:
    /// x (..., I) W_ihᵀ as one GEMM over every leading axis.
    static var matmul_transposed_rows(const var& x, const var& w)
    {
        shape_type rows{x.size() / x.shape().back(), x.shape().back()};
        shape_type out = x.shape();
        out.back() = w.shape()[0];
        return reshape(matmul_transposed(reshape(x, rows), w), out);
    }
};

inline layer<user_layer_norm_lstm_cell> user_layer_norm_lstm_layer(param_store& store,
                                                                   std::size_t in,
                                                                   std::size_t hidden, generator& g)
{
    return layer<user_layer_norm_lstm_cell>(
        "user_layer_norm_lstm", store, in, hidden, {},
        [&g, hidden](param_store& s, std::size_t input_size, const param_name& n) {
            const real k = real(1) / std::sqrt(real(hidden));
            user_layer_norm_lstm_cell c;
            c.w_ih = add_uniform(s, n("w_ih"), {4 * hidden, input_size}, k, g);
            c.w_hh = add_uniform(s, n("w_hh"), {4 * hidden, hidden}, k, g);
            c.g_ih = s.add(n("g_ih"), tensor(shape_type{4, hidden}, real(1)));
            c.b_ih = s.add(n("b_ih"), zeros({4, hidden}));
            c.g_hh = s.add(n("g_hh"), tensor(shape_type{4, hidden}, real(1)));
            c.b_hh = s.add(n("b_hh"), zeros({4, hidden}));
            c.g_c = s.add(n("g_c"), tensor(shape_type{hidden}, real(1)));
            c.b_c = s.add(n("b_c"), zeros({hidden}));
            return c;
        });
}

} // namespace unfold::bench
