#pragma once
/// What a child process of the benchmark measures and prints on its standard output, one line
/// per figure: a config's step times (--child-time: "TIME name seconds", "FLOPS gates flops"),
/// the threading section's (--child-threads), one implementation's peak memory (--child-mem:
/// "MEM base_mb peak_mb") and the tape's per-op cost (--child-ops: "OPS name seconds").

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/framework/threads.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer_norm_cells.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/tanh.hpp>

#include "bench_util.hpp"
#include "gemm_bound.hpp"
#include "steps.hpp"
#include "user_layer_norm_lstm.hpp"
#include "user_lstm.hpp"

#ifdef UNFOLD_BENCH_TORCH
#include <torch/torch.h>
#endif

namespace unfold::bench
{

/// VmHWM or VmRSS of this process, in MB.
inline double status_mb(const char* key)
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0)
            return std::atof(line.c_str() + std::strlen(key) + 1) / 1024.0;
    return 0;
}

/// Times the named steps alternately (one of each per round) and prints "TIME name median_s".
/// Each round runs them in a new order (a fixed-seed shuffle): a step runs slower right after
/// some others (figures in bench/RESULTS.md), so a fixed order would charge that to whichever
/// step happens to follow.
inline void alternate(const std::vector<std::pair<std::string, std::function<void()>>>& steps,
                      int reps)
{
    std::vector<std::vector<double>> times(steps.size());
    for (auto& s : steps) // warm-up
        s.second();
    std::vector<std::size_t> order(steps.size());
    std::iota(order.begin(), order.end(), std::size_t(0));
    std::mt19937 shuffle_seed(12345);
    for (int r = 0; r < reps; ++r)
    {
        std::shuffle(order.begin(), order.end(), shuffle_seed);
        for (const std::size_t k : order)
        {
            const auto start = clock_type::now();
            steps[k].second();
            times[k].push_back(seconds_since(start));
        }
    }
    for (std::size_t k = 0; k < steps.size(); ++k)
        std::printf("TIME %s %.9g\n", steps[k].first.c_str(), median(times[k]));
    std::fflush(stdout);
}

/// The LSTM's step unrolled without and with recurrent dropout (p = 0.25 on input and state),
/// alternately: "unfold.lstm_unrolled", "unfold.lstm_recurrent_dropout".
template <class Layer>
void alternate_recurrent_dropout(const Layer& lstm, const tensor& x, int reps)
{
    generator masks(7);
    alternate({{"unfold.lstm_unrolled", unfold_recurrent_dropout_step(lstm, x, masks, 0)},
               {"unfold.lstm_recurrent_dropout",
                unfold_recurrent_dropout_step(lstm, x, masks, real(0.25))}},
              reps);
}

/// The LSTM against the built-in layer-normalised LSTM and a user's composed from primitive ops,
/// alternately: "unfold.lstm_again", "unfold.ln_lstm", "unfold.user_ln_lstm".
template <class Layer>
void alternate_layer_norm(const Layer& lstm, const tensor& x, const config& c, int reps)
{
    generator g(43);
    param_store s_ln, s_user;
    const auto ln = layer_norm_lstm_layer(s_ln, c.I, c.H, g);
    const auto user = user_layer_norm_lstm_layer(s_user, c.I, c.H, g);
    alternate({{"unfold.lstm_again", unfold_step(lstm, x)},
               {"unfold.ln_lstm", unfold_step(ln, x)},
               {"unfold.user_ln_lstm", unfold_step(user, x)}},
              reps);
}

inline void child_time(const config& c, int reps)
{
    generator g(42);
    const tensor x = g.normal({c.T, c.B, c.I});
    param_store s_rnn, s_gru, s_lstm, s_user;
    const auto rnn = rnn_layer(s_rnn, c.I, c.H, g);
    const auto gru = gru_layer(s_gru, c.I, c.H, g);
    const auto lstm = lstm_layer(s_lstm, c.I, c.H, g);
    const auto user = user_lstm_layer(s_user, c.I, c.H, g);
    const gemm_set g1 = gemm_bound_step(c, 1), g3 = gemm_bound_step(c, 3),
                   g4 = gemm_bound_step(c, 4);
    std::printf("FLOPS 1 %.9g\nFLOPS 3 %.9g\nFLOPS 4 %.9g\n", g1.flops, g3.flops, g4.flops);
#ifdef UNFOLD_BENCH_TORCH
    torch::manual_seed(0);
    const torch::Tensor tx = to_torch(x);
    if (tx.requires_grad()) // the GEMM bound leaves out dx (gemm_bound_step)
    {
        std::fprintf(stderr, "the libtorch input requires a gradient\n");
        std::exit(3);
    }
    torch::nn::RNN t_rnn(torch::nn::RNNOptions(c.I, c.H));
    torch::nn::GRU t_gru(torch::nn::GRUOptions(c.I, c.H));
    torch::nn::LSTM t_lstm(torch::nn::LSTMOptions(c.I, c.H));
    torch::nn::LSTMCell t_cell(torch::nn::LSTMCellOptions(c.I, c.H));
    alternate({{"unfold.rnn", unfold_step(rnn, x)},
               {"torch.rnn", torch_layer_step(t_rnn, tx)},
               {"gemm.1", g1.run}},
              reps);
    alternate({{"unfold.gru", unfold_step(gru, x)},
               {"torch.gru", torch_layer_step(t_gru, tx)},
               {"gemm.3", g3.run}},
              reps);
    alternate({{"unfold.lstm", unfold_step(lstm, x)},
               {"torch.lstm", torch_layer_step(t_lstm, tx)},
               {"unfold.user_lstm", unfold_step(user, x)},
               {"torch.lstm_cell", torch_cell_step(t_cell, tx, c.B, c.H)},
               {"gemm.4", g4.run}},
              reps);
    alternate_recurrent_dropout(lstm, x, reps);
    alternate_layer_norm(lstm, x, c, reps);
#else
    alternate({{"unfold.rnn", unfold_step(rnn, x)}, {"gemm.1", g1.run}}, reps);
    alternate({{"unfold.gru", unfold_step(gru, x)}, {"gemm.3", g3.run}}, reps);
    alternate({{"unfold.lstm", unfold_step(lstm, x)},
               {"unfold.user_lstm", unfold_step(user, x)},
               {"gemm.4", g4.run}},
              reps);
    alternate_recurrent_dropout(lstm, x, reps);
    alternate_layer_norm(lstm, x, c, reps);
#endif
}

/// The threading section's child (started with OPENBLAS_NUM_THREADS=2): each model's step on one
/// thread and on two with the policy, alternately, and libtorch's LSTM on 1 and 2 threads.
inline void child_threads(const config& c, int reps)
{
    generator g(42);
    const tensor x = g.normal({c.T, c.B, c.I});
    param_store s_rnn, s_gru, s_lstm;
    const auto rnn = rnn_layer(s_rnn, c.I, c.H, g);
    const auto gru = gru_layer(s_gru, c.I, c.H, g);
    const auto lstm = lstm_layer(s_lstm, c.I, c.H, g);
    const auto on = [](int threads, std::function<void()> step) -> std::function<void()> {
        return [threads, step] {
            unfold::set_num_threads(threads);
            step();
        };
    };
    alternate({{"unfold.rnn.1", on(1, unfold_step(rnn, x))},
               {"unfold.rnn.2", on(2, unfold_step(rnn, x))}},
              reps);
    alternate({{"unfold.gru.1", on(1, unfold_step(gru, x))},
               {"unfold.gru.2", on(2, unfold_step(gru, x))}},
              reps);
    alternate({{"unfold.lstm.1", on(1, unfold_step(lstm, x))},
               {"unfold.lstm.2", on(2, unfold_step(lstm, x))}},
              reps);
#ifdef UNFOLD_BENCH_TORCH
    // After Unfold's steps: libtorch's OpenMP workers, once started, spin after each parallel
    // region and would take the second core from Unfold's 2-thread GEMMs. libtorch's GEMMs run in
    // the same OpenBLAS, whose count Unfold's policy may have left at one.
    torch::manual_seed(0);
    const torch::Tensor tx = to_torch(x);
    torch::nn::LSTM t_lstm(torch::nn::LSTMOptions(c.I, c.H));
    const auto torch_on = [](int threads, std::function<void()> step) -> std::function<void()> {
        return [threads, step] {
            at::set_num_threads(threads);
            unfold::set_blas_threads(threads);
            step();
        };
    };
    alternate({{"torch.lstm.1", torch_on(1, torch_layer_step(t_lstm, tx))},
               {"torch.lstm.2", torch_on(2, torch_layer_step(t_lstm, tx))}},
              reps);
#endif
}

inline void child_memory(const config& c, const std::string& impl)
{
    const double base = status_mb("VmHWM:");
    generator g(42);
    const tensor x = g.normal({c.T, c.B, c.I});
    if (impl == "unfold")
    {
        param_store store;
        const auto lstm = lstm_layer(store, c.I, c.H, g);
        for (int k = 0; k < 2; ++k)
            unfold_step(lstm, x)();
    }
#ifdef UNFOLD_BENCH_TORCH
    else
    {
        const torch::Tensor tx = to_torch(x);
        torch::nn::LSTM t_lstm(torch::nn::LSTMOptions(c.I, c.H));
        for (int k = 0; k < 2; ++k)
            torch_layer_step(t_lstm, tx)();
    }
#endif
    std::printf("MEM %.1f %.1f\n", base, status_mb("VmHWM:"));
}

/// The chain child_ops times, for either library: `ops` elementwise ops on y, tanh, ·k, +k and
/// σ in turn.
template <class T, class Tanh, class Sigmoid>
T op_chain(T y, const T& k, int ops, Tanh tanh_of, Sigmoid sigmoid_of)
{
    for (int i = 0; i < ops; ++i)
        switch (i % 4)
        {
            case 0:
                y = tanh_of(y);
                break;
            case 1:
                y = y * k;
                break;
            case 2:
                y = y + k;
                break;
            default:
                y = sigmoid_of(y);
                break;
        }
    return y;
}

/// The per-op cost of the tape: a chain of 1,000 elementwise ops on 16-element tensors (tanh,
/// mul, add, sigmoid in turn), forward + backward. Prints "OPS name seconds_per_op".
inline void child_ops(int reps)
{
    constexpr int chain = 1000;
    const std::size_t n = 16;
    std::vector<std::pair<std::string, std::function<void()>>> steps;
    steps.emplace_back("unfold", [n] {
        tape t;
        const var x = t.variable(full({n}, real(0.5)));
        const var k = t.constant(full({n}, real(0.9)));
        const var y = op_chain(
            x, k, chain, [](const var& v) { return unfold::tanh(v); },
            [](const var& v) { return sigmoid(v); });
        t.backward(sum(y));
    });
#ifdef UNFOLD_BENCH_TORCH
    steps.emplace_back("torch", [n] {
        auto x = torch::full({long(n)}, 0.5, torch::requires_grad());
        auto k = torch::full({long(n)}, 0.9);
        const torch::Tensor y = op_chain<torch::Tensor>(
            x, k, chain, [](const torch::Tensor& v) { return torch::tanh(v); },
            [](const torch::Tensor& v) { return torch::sigmoid(v); });
        y.sum().backward();
    });
#endif
    std::vector<std::vector<double>> times(steps.size());
    for (int r = 0; r < reps + 2; ++r)
        for (std::size_t k = 0; k < steps.size(); ++k)
        {
            const auto start = clock_type::now();
            steps[k].second();
            if (r >= 2)
                times[k].push_back(seconds_since(start));
        }
    for (std::size_t k = 0; k < steps.size(); ++k)
        std::printf("OPS %s %.9g\n", steps[k].first.c_str(), median(times[k]) / chain);
}

} // namespace unfold::bench
