#pragma once
/// One training step of each benchmarked implementation as a callable: forward over the whole
/// sequence and backward of the sum of every output. Unfold's layers always; libtorch's layers,
/// its LSTMCell loop and the conversion of Unfold's input when built with libtorch.

#include <cstdint>
#include <functional>
#include <tuple>
#include <vector>

#include <unfold/framework/tape.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/recurrent_dropout.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/stack.hpp>
#include <unfold/ops/sum.hpp>

#ifdef UNFOLD_BENCH_TORCH
#include <torch/torch.h>
#endif

namespace unfold::bench
{

template <class Layer>
std::function<void()> unfold_step(const Layer& l, const tensor& x)
{
    return [&l, &x] {
        tape t;
        const var xs = t.constant(x);
        const layer_result r = l(t, xs);
        t.backward(sum(r.output));
    };
}

/// The step of a one-layer `l`'s cell unrolled by hand, with recurrent dropout of probability p on
/// its input and state (Note [Recurrent dropout]: masks drawn from `g` for the step) or, with
/// p = 0, without a wrapper: the pair measures what the wrapper costs on the same code path.
template <class Layer>
std::function<void()> unfold_recurrent_dropout_step(const Layer& l, const tensor& x, generator& g,
                                                    real p)
{
    return [&l, &x, &g, p] {
        tape t;
        const var xs = t.constant(x);
        const std::size_t B = x.shape()[1];
        const auto s0 = zero_state<typename Layer::state>(t, B, l.state_sizes());
        std::vector<typename Layer::state> states;
        if (p > 0)
            states = unroll(
                with_recurrent_dropout(l.cell(0), t, g, B, l.input_size(), l.output_size(), {p, p}),
                t, xs, s0);
        else
            states = unroll(l.cell(0), t, xs, s0);
        t.backward(sum(stack(outputs(states))));
    };
}

#ifdef UNFOLD_BENCH_TORCH
template <class Module>
std::function<void()> torch_layer_step(Module& m, const torch::Tensor& x)
{
    return [&m, &x] {
        auto out = std::get<0>(m->forward(x));
        out.sum().backward();
    };
}

inline std::function<void()> torch_cell_step(torch::nn::LSTMCell& cell, const torch::Tensor& x,
                                             std::size_t B, std::size_t H)
{
    return [&cell, &x, B, H] {
        auto h = torch::zeros({long(B), long(H)});
        auto c = torch::zeros({long(B), long(H)});
        std::vector<torch::Tensor> hs;
        for (long t = 0; t < x.size(0); ++t)
        {
            std::tie(h, c) = cell->forward(x[t], std::make_tuple(h, c));
            hs.push_back(h);
        }
        torch::stack(hs).sum().backward();
    };
}

inline torch::Tensor to_torch(const tensor& x)
{
    std::vector<int64_t> shape(x.shape().begin(), x.shape().end());
    return torch::from_blob(const_cast<real*>(x.data()), shape, torch::kFloat).clone();
}
#endif

} // namespace unfold::bench
