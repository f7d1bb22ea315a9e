#pragma once
/// The GEMM bound of a training step: the step's GEMMs alone, at its own shapes, as a step that
/// is timed beside the real ones ("of bound" = bound time / step time).

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include <unfold/framework/gemm.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tensor.hpp>

#include "bench_util.hpp"

namespace unfold::bench
{

/// The GEMMs of one training step of a cell with `gates` gate blocks, at the step's own shapes:
/// the input projection and the weight gradients as whole-sequence GEMMs, the recurrent product
/// and its input gradient once per time step, and the input sequence's gradient dx (one
/// whole-sequence GEMM) only when `input_grad` — the benchmarked input needs none, and neither
/// Unfold nor libtorch computes it. Returns the FLOPs and a step that runs them (timed alternately
/// with the training steps, so both see the same machine load).
struct gemm_set
{
    double flops = 0;
    std::function<void()> run;
};

inline gemm_set gemm_bound_step(const config& c, std::size_t gates, bool input_grad = false)
{
    const std::size_t B = c.B, T = c.T, I = c.I, H = c.H, G = gates * H, BT = B * T;
    struct buffers
    {
        tensor x, h, w_ih, w_hh, gy, y, gx, gh, gw_ih, gw_hh;
    };
    generator g(7);
    auto m = std::make_shared<buffers>();
    m->x = g.uniform({BT, I}, -1, 1);
    m->h = g.uniform({BT, H}, -1, 1);
    m->w_ih = g.uniform({G, I}, -1, 1);
    m->w_hh = g.uniform({G, H}, -1, 1);
    m->gy = g.uniform({BT, G}, -1, 1);
    m->y = zeros({BT, G});
    m->gx = zeros({BT, I});
    m->gh = zeros({BT, H});
    m->gw_ih = zeros({G, I});
    m->gw_hh = zeros({G, H});
    struct shape
    {
        bool ta, tb;
        std::size_t m, n, k, times;
        const real *a, *b;
        real* c;
    };
    std::vector<shape> shapes = {
        {false, true, BT, G, I, 1, m->x.data(), m->w_ih.data(), m->y.data()},   // x W_ihᵀ
        {false, true, B, G, H, T, m->h.data(), m->w_hh.data(), m->y.data()},    // h W_hhᵀ
        {false, false, B, H, G, T, m->gy.data(), m->w_hh.data(), m->gh.data()}, // dh
        {true, false, G, I, BT, 1, m->gy.data(), m->x.data(), m->gw_ih.data()}, // dW_ih
        {true, false, G, H, BT, 1, m->gy.data(), m->h.data(), m->gw_hh.data()}, // dW_hh
    };
    if (input_grad) // dx
        shapes.push_back({false, false, BT, I, G, 1, m->gy.data(), m->w_ih.data(), m->gx.data()});
    gemm_set set;
    for (const shape& s : shapes)
        set.flops += 2.0 * double(s.m) * double(s.n) * double(s.k) * double(s.times);
    set.run = [m, shapes] {
        for (const shape& s : shapes)
            for (std::size_t k = 0; k < s.times; ++k)
                gemm(s.ta, s.tb, s.m, s.n, s.k, 1, s.a, s.b, 1, s.c);
    };
    return set;
}

} // namespace unfold::bench
