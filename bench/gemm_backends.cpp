/// The sweep behind Note [GEMM backends] (framework/gemm.hpp): every GEMM shape of the benchmarked
/// RNN/GRU/LSTM training steps and of the language model's step (bench/char_lm.py: B 50, T 50,
/// embedding 64, two LSTM layers of 128, a head over 100 symbols), timed through unfold::gemm on
/// each backend, forced in turn, alternating, on one thread, C += op(A)·op(B) as the tape calls it.
/// Shapes per config (B, T, I, H) and gate count g, G = g·H: x·W_ihᵀ (BT×G×I), h·W_hhᵀ (B×G×H),
/// dh = gy·W_hh (B×H×G), dx = gy·W_ih (BT×I×G), dW_ih = gyᵀ·x (G×I×BT), dW_hh per step (G×H×B).
/// Prints a table with GFLOP/s per backend, the time ratio, what the policy picks and whether
/// that is the faster one. Rerun it after changing a BLAS, oneDNN or the machine.
///
///     gemm_backends [--quick] [--reps N]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <unfold/framework/gemm.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/framework/threads.hpp>

#include "bench_util.hpp"

namespace
{
using namespace unfold;
using namespace unfold::bench;

struct shape
{
    bool ta, tb;
    std::size_t m, n, k;
    bool operator<(const shape& o) const
    {
        return std::tie(m, n, k, ta, tb) < std::tie(o.m, o.n, o.k, o.ta, o.tb);
    }
};

/// Median µs per GEMM on each backend, samples of ~4 ms alternating between them.
std::pair<double, double> time_shape(const shape& s, int reps)
{
    generator g(7);
    const tensor a = g.uniform({s.m * s.k}, -1, 1), b = g.uniform({s.k * s.n}, -1, 1);
    tensor c = zeros({s.m * s.n});
    auto run = [&](gemm_backend backend, int times) {
        set_gemm_backend(backend);
        const auto start = clock_type::now();
        for (int i = 0; i < times; ++i)
            gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a.data(), b.data(), 1, c.data());
        return std::chrono::duration<double>(clock_type::now() - start).count() / times * 1e6;
    };
    run(gemm_backend::cblas, 2);
    run(gemm_backend::dnnl, 2);
    const int times = std::max(1, int(4000 / run(gemm_backend::cblas, 3)));
    std::vector<double> cblas, dnnl;
    for (int r = 0; r < reps; ++r)
    {
        cblas.push_back(run(gemm_backend::cblas, times));
        dnnl.push_back(run(gemm_backend::dnnl, times));
    }
    set_gemm_backend(gemm_backend::automatic);
    return {median(cblas), median(dnnl)};
}

} // namespace

int main(int argc, char** argv)
{
    if (!gemm_backend_available(gemm_backend::dnnl))
    {
        std::fprintf(stderr, "gemm_backends: this build has no oneDNN (libdnnl-dev); nothing to "
                             "compare\n");
        return 1;
    }
    const std::vector<std::string> args(argv + 1, argv + argc);
    int reps = 11;
    for (std::size_t i = 0; i < args.size(); ++i)
    {
        if (args[i] == "--quick")
            reps = 5;
        else if (args[i] == "--reps" && i + 1 < args.size())
            reps = std::max(1, std::atoi(args[++i].c_str()));
        else
        {
            std::fprintf(stderr, "usage: %s [--quick] [--reps N]\n", argv[0]);
            return 2;
        }
    }
    set_num_threads(1);

    std::map<shape, std::vector<std::string>> shapes;
    auto add_layer = [&](const std::string& where, std::size_t B, std::size_t T, std::size_t I,
                         std::size_t G, std::size_t H) {
        const std::size_t BT = B * T;
        shapes[{false, true, BT, G, I}].push_back(where + " x·W_ihᵀ");
        shapes[{false, true, B, G, H}].push_back(where + " h·W_hhᵀ");
        shapes[{false, false, B, H, G}].push_back(where + " dh");
        shapes[{false, false, BT, I, G}].push_back(where + " dx");
        shapes[{true, false, G, I, BT}].push_back(where + " dW_ih");
        shapes[{true, false, G, H, B}].push_back(where + " dW_hh/step");
    };
    for (const config& c : benchmark_configs())
        for (const std::size_t gates : {1, 3, 4})
            add_layer(c.name + " " + model_of_gates(gates), c.B, c.T, c.I, gates * c.H, c.H);
    add_layer("char LM layer 0", 50, 50, 64, 512, 128);
    add_layer("char LM layer 1", 50, 50, 128, 512, 128);
    shapes[{false, true, 2500, 100, 128}].push_back("char LM head");
    shapes[{false, false, 2500, 128, 100}].push_back("char LM head dx");
    shapes[{true, false, 100, 128, 2500}].push_back("char LM head dW");

    std::printf("GEMM backends sweep, one thread, %s, C += op(A)·op(B), %d reps of ~4 ms "
                "alternating; load average at start: %s\n\n",
                blas_kernel(), reps, loadavg().c_str());
    std::printf("| m×n×k (op) | where | cblas GFLOP/s | dnnl GFLOP/s | dnnl/cblas time | policy | "
                "policy is faster |\n|---|---|---|---|---|---|---|\n");
    std::size_t right = 0, total = 0;
    double policy_us = 0, best_us = 0, cblas_us = 0;
    for (const auto& [s, where] : shapes)
    {
        const auto [cblas, dnnl] = time_shape(s, reps);
        const double flop = 2.0 * double(s.m) * double(s.n) * double(s.k);
        const gemm_backend pick = gemm_backend_for(s.ta, s.tb, s.m, s.n, s.k, true);
        const double picked = pick == gemm_backend::dnnl ? dnnl : cblas;
        const bool faster = picked <= std::min(cblas, dnnl) * 1.03; // within the noise
        right += faster;
        ++total;
        policy_us += picked;
        best_us += std::min(cblas, dnnl);
        cblas_us += cblas;
        std::printf("| %zu×%zu×%zu (%s%s) | %s | %.1f | %.1f | %.2f | %s | %s |\n", s.m, s.n, s.k,
                    s.ta ? "T" : "N", s.tb ? "T" : "N", joined(where).c_str(), flop / cblas / 1e3,
                    flop / dnnl / 1e3, dnnl / cblas, gemm_backend_name(pick),
                    faster ? "yes" : "no");
        std::fflush(stdout);
    }
    std::printf("\nThe policy picks the faster backend (within 3%%) at %zu of %zu shapes. One call "
                "of each shape: %.0f µs on cblas, %.0f µs as the policy picks, %.0f µs at the "
                "faster of the two.\n",
                right, total, cblas_us, policy_us, best_us);
}
