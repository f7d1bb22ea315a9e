#pragma once
/// The benchmark's printed report: the single-thread table with the GEMM bound, peak memory, and
/// the threading section's table, as Markdown.

#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/threads.hpp>

#include "bench_util.hpp"
#include "child_runner.hpp"

namespace unfold::bench
{

inline void print_report(const std::vector<std::pair<config, config_result>>& results,
                         bool have_torch)
{
    std::printf("\nGEMM bound: the step's GEMMs alone (projection, recurrent product, dh, dW_ih, "
                "dW_hh; no dx: the input needs no gradient in either implementation). "
                "\"at the bound\" = libtorch ms / bound ms, the largest libtorch/Unfold an "
                "implementation doing these GEMMs with this BLAS could reach.\n");
    std::printf("\n| config | model | Unfold ms | libtorch ms | libtorch/Unfold | at the bound "
                "| Unfold GFLOP/s | GEMM bound ms (GFLOP/s) | Unfold of bound | libtorch of bound "
                "|\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    struct row
    {
        const char *label, *unfold, *torch;
        std::size_t gates;
    };
    const row rows[] = {
        {"RNN", "unfold.rnn", "torch.rnn", 1},
        {"GRU", "unfold.gru", "torch.gru", 3},
        {"LSTM", "unfold.lstm", "torch.lstm", 4},
        {"LSTM, user cell / LSTMCell loop", "unfold.user_lstm", "torch.lstm_cell", 4}};
    for (const auto& [c, r] : results)
        for (const row& w : rows)
        {
            const double u = r.time.count(w.unfold) ? r.time.at(w.unfold) : 0;
            const double t = have_torch && r.time.count(w.torch) ? r.time.at(w.torch) : 0;
            const auto [flops, bound] =
                r.gemm.count(w.gates) ? r.gemm.at(w.gates) : std::pair<double, double>{0, 0};
            char torch_ms[32] = "–", ratio[32] = "–", ceiling[32] = "–", torch_frac[32] = "–";
            if (t > 0)
            {
                std::snprintf(torch_ms, sizeof torch_ms, "%.3g", t * 1e3);
                std::snprintf(ratio, sizeof ratio, "**%.2f**", t / u);
                if (bound > 0)
                    std::snprintf(ceiling, sizeof ceiling, "%.2f", t / bound);
                std::snprintf(torch_frac, sizeof torch_frac, "%.0f%%", 100 * bound / t);
            }
            std::printf("| %s %zu×%zu×%zu×%zu | %s | %.3g | %s | %s | %s | %.1f | %.3g (%.0f) | "
                        "%.0f%% | %s |\n",
                        c.name.c_str(), c.B, c.T, c.I, c.H, w.label, u * 1e3, torch_ms, ratio,
                        ceiling, flops / u * 1e-9, bound * 1e3, flops / bound * 1e-9,
                        100 * bound / u, torch_frac);
        }
    std::printf("\nRecurrent dropout (Note [Recurrent dropout]): the LSTM cell unrolled with "
                "p = 0.25 masks on its input and state against the same unroll without the "
                "wrapper, alternately.\n\n| config | LSTM unrolled ms | with recurrent dropout ms "
                "| dropout/plain |\n|---|---|---|---|\n");
    for (const auto& [c, r] : results)
        if (r.time.count("unfold.lstm_unrolled") && r.time.count("unfold.lstm_recurrent_dropout"))
        {
            const double plain = r.time.at("unfold.lstm_unrolled"),
                         dropped = r.time.at("unfold.lstm_recurrent_dropout");
            std::printf("| %s %zu×%zu×%zu×%zu | %.3g | %.3g | **%.3f** |\n", c.name.c_str(), c.B,
                        c.T, c.I, c.H, plain * 1e3, dropped * 1e3, dropped / plain);
        }
    std::printf("\nLayer-normalised LSTM: the built-in cell (models/layer_norm_cells.hpp, the "
                "layer_norm op) and a user's composed from primitive ops "
                "(bench/user_layer_norm_lstm.hpp: means, a square root, broadcasting divisions), "
                "against the plain LSTM, alternately.\n\n| config | LSTM ms | built-in LN-LSTM ms "
                "| user LN-LSTM ms | built-in/LSTM | user/LSTM |\n|---|---|---|---|---|---|\n");
    for (const auto& [c, r] : results)
        if (r.time.count("unfold.lstm_again") && r.time.count("unfold.ln_lstm") &&
            r.time.count("unfold.user_ln_lstm"))
        {
            const double plain = r.time.at("unfold.lstm_again"), ln = r.time.at("unfold.ln_lstm"),
                         user = r.time.at("unfold.user_ln_lstm");
            std::printf("| %s %zu×%zu×%zu×%zu | %.3g | %.3g | %.3g | %.2f | **%.2f** |\n",
                        c.name.c_str(), c.B, c.T, c.I, c.H, plain * 1e3, ln * 1e3, user * 1e3,
                        ln / plain, user / plain);
        }
    std::printf("\nPeak RSS (VmHWM) of a process running two LSTM steps; in parentheses the RSS "
                "before the model ran (libraries loaded):\n\n| config | Unfold MB | libtorch MB "
                "|\n|---|---|---|\n");
    for (const auto& [c, r] : results)
    {
        char torch_mb[64] = "–";
        if (have_torch)
            std::snprintf(torch_mb, sizeof torch_mb, "%.0f (%.0f)", r.mem_torch, r.mem_torch_base);
        std::printf("| %s | %.0f (%.0f) | %s |\n", c.name.c_str(), r.mem_unfold, r.mem_unfold_base,
                    torch_mb);
    }
}

inline void print_threads(const std::vector<std::pair<config, threads_result>>& results,
                          bool have_torch)
{
    std::printf("\nTwo threads: one child per config started with OPENBLAS_NUM_THREADS=2; Unfold "
                "on 1 thread vs 2 with the per-GEMM policy (2 threads when m·n·k >= %.3g and k >= "
                "%zu), alternating; libtorch's LSTM on 1 and 2 threads for reference. 2t/1t < 1 "
                "is faster on two; others' load = the share of a core other processes used.\n",
                parallel_gemm_work, parallel_gemm_min_k);
    std::printf("\n| config | model | Unfold 1t ms | Unfold 2t ms | Unfold 2t/1t | libtorch 1t ms "
                "| libtorch 2t ms | libtorch 2t/1t | others' load |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|\n");
    const std::pair<const char*, const char*> models[] = {
        {"RNN", "rnn"}, {"GRU", "gru"}, {"LSTM", "lstm"}};
    for (const auto& [c, r] : results)
        for (const auto& [label, key] : models)
        {
            const auto get = [&r = r](const std::string& name) {
                return r.time.count(name) ? r.time.at(name) : 0.0;
            };
            const double u1 = get(std::string("unfold.") + key + ".1"),
                         u2 = get(std::string("unfold.") + key + ".2"),
                         t1 = get(std::string("torch.") + key + ".1"),
                         t2 = get(std::string("torch.") + key + ".2");
            char torch_cols[96] = "– | – | –";
            if (have_torch && t1 > 0 && t2 > 0)
                std::snprintf(torch_cols, sizeof torch_cols, "%.3g | %.3g | %.2f", t1 * 1e3,
                              t2 * 1e3, t2 / t1);
            std::printf("| %s %zu×%zu×%zu×%zu | %s | %.3g | %.3g | **%.2f** | %s | %.2f |\n",
                        c.name.c_str(), c.B, c.T, c.I, c.H, label, u1 * 1e3, u2 * 1e3,
                        u1 > 0 ? u2 / u1 : 0.0, torch_cols, r.others);
        }
}

} // namespace unfold::bench
