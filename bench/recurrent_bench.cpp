/// Training-step benchmark of Unfold's composed RNN, GRU and LSTM against libtorch's nn::RNN,
/// nn::GRU, nn::LSTM and an LSTMCell loop, single-threaded, side by side in one process.
///
/// One step = forward over a (T, B, I) sequence + backward of the sum of every output, gradients
/// for every parameter. Every config runs in fresh child processes (this program re-executes
/// itself): one child alternates Unfold and libtorch step by step (medians of the same run), and
/// one child per implementation measures the peak RSS (VmHWM) of the LSTM at that config, Unfold's
/// in a binary without libtorch. The GEMM bound of a step is the measured time of its GEMMs at the
/// step's own shapes (input projection and weight gradients as whole-sequence GEMMs, the recurrent
/// product and its gradient once per time step); "of bound" = bound time / step time. The input
/// sequence is data that needs no gradient (a constant in Unfold, requires_grad false in
/// libtorch), so neither computes dx and the bound leaves out its GEMM (gemm_bound_step includes it
/// only for an input that requires a gradient).
///
/// Everything above runs on one thread (children started with OPENBLAS_NUM_THREADS=1, libtorch
/// at::set_num_threads(1)). A threading section follows: per config, one child started with
/// OPENBLAS_NUM_THREADS=2 alternates Unfold's RNN/GRU/LSTM steps on one thread
/// (unfold::set_num_threads(1)) and on two with the per-GEMM policy (set_num_threads(2): only GEMMs
/// large enough to gain get the second thread, Note [BLAS threads] in framework/threads.hpp),
/// with libtorch's LSTM on 1 and 2 threads (at::set_num_threads and OpenBLAS's count, which
/// libtorch shares with Unfold in one process) as a reference; it reports
/// the 2-thread/1-thread time ratio and the share of a core other processes used meanwhile (a
/// busy second core makes two threads look slower). --no-threads skips the section,
/// --threads-only runs it alone.
///
///     unfold_bench_torch [--quick] [--configs tiny,small] [--reps N] [--no-threads|--threads-only]
///
/// Built without libtorch (unfold_bench), the libtorch columns are skipped.

#include <dlfcn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unfold/models/gru.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/ops/addcmul.hpp>
#include <unfold/ops/addmm.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/slice.hpp>
#include <unfold/ops/sliced.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/tanh.hpp>

#include "bench_util.hpp"

#ifdef UNFOLD_BENCH_TORCH
#include <torch/torch.h>
#endif

namespace
{
using namespace unfold;
using namespace unfold::bench;

const config& config_named(const std::string& name)
{
    for (const auto& c : benchmark_configs())
        if (c.name == name)
            return c;
    std::fprintf(stderr, "unknown config %s\n", name.c_str());
    std::exit(2);
}

/// VmHWM or VmRSS of this process, in MB.
double status_mb(const char* key)
{
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key, 0) == 0)
            return std::atof(line.c_str() + std::strlen(key) + 1) / 1024.0;
    return 0;
}

// OpenBLAS's thread controls, looked up at run time so that any CBLAS links.
void set_blas_threads(int n)
{
    if (auto f = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
        f(n);
}
int blas_threads()
{
    auto f = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    return f ? f() : -1;
}
std::string blas_core()
{
    auto f = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    return f ? f() : "unknown";
}

// ---------------------------------------------------------------------------------------------
// Unfold

/// A user-written LSTM cell, composed here from primitives (not the built-in lstm_cell): the input
/// weight w in (in, out) layout, one bias, each gate's activation applied to its block of the
/// pre-activation with sliced() (one node, no copy of the block on the tape). It declares project()
/// (Note [Input projection] in models/cell.hpp) like the built-in cells, and so gets the same
/// layer. The recurrent weight u is stored (out, in) = (4H, H), as PyTorch stores it: with u as
/// (H, 4H) the per-step GEMMs h·u, gy·uᵀ and hᵀ·gy ran 8%, 27% and 11% slower in OpenBLAS 0.3.21
/// at the large shapes (gy·uᵀ 60% at medium), which made this cell 11-14% slower than the
/// built-in one; the one-GEMM projection over the whole sequence runs as fast in either layout.
struct user_lstm_cell
{
    using state = lstm_state;
    param w, u, b;

    state operator()(tape& t, const var& x, const state& s) const
    {
        return (*this)(t, projected{project(t, x)}, s);
    }
    var project(tape& t, const var& x) const { return addmm(t[b], x, t[w]); }
    state operator()(tape& t, const projected& x, const state& s) const
    {
        const auto H = static_cast<std::ptrdiff_t>(u.shape()[1]);
        const var a = addmm_transposed(x, s.h, t[u]); // x + h uᵀ
        const var i = sliced(sigmoid_op{}, a, 0, H); // σ(a[:, 0:H]) as one node
        const var f = sliced(sigmoid_op{}, a, H, 2 * H);
        const var g = sliced(tanh_op{}, a, 2 * H, 3 * H);
        const var o = sliced(sigmoid_op{}, a, 3 * H, 4 * H);
        const var c = addcmul(f * s.c, i, g); // f ⊙ c + i ⊙ g
        return {o * unfold::tanh(c), c};
    }
};

layer<user_lstm_cell> user_lstm_layer(param_store& store, std::size_t in, std::size_t hidden,
                                      generator& g)
{
    return layer<user_lstm_cell>(
        "user_lstm", store, in, hidden, {},
        [&g, hidden](param_store& s, std::size_t input_size, const param_name& n) {
            const real k = real(1) / std::sqrt(real(hidden));
            user_lstm_cell c;
            c.w = add_uniform(s, n("w"), {input_size, 4 * hidden}, k, g);
            c.u = add_uniform(s, n("u"), {4 * hidden, hidden}, k, g);
            c.b = add_uniform(s, n("b"), {4 * hidden}, k, g);
            return c;
        });
}

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

gemm_set gemm_bound_step(const config& c, std::size_t gates, bool input_grad = false)
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

// ---------------------------------------------------------------------------------------------
// libtorch

#ifdef UNFOLD_BENCH_TORCH
template <class Module>
std::function<void()> torch_layer_step(Module& m, const torch::Tensor& x)
{
    return [&m, &x] {
        auto out = std::get<0>(m->forward(x));
        out.sum().backward();
    };
}

std::function<void()> torch_cell_step(torch::nn::LSTMCell& cell, const torch::Tensor& x,
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

torch::Tensor to_torch(const tensor& x)
{
    std::vector<int64_t> shape(x.shape().begin(), x.shape().end());
    return torch::from_blob(const_cast<real*>(x.data()), shape, torch::kFloat).clone();
}
#endif

// ---------------------------------------------------------------------------------------------
// Children: one config's timings, or one implementation's peak memory.

/// Times the named steps alternately (one of each per round) and prints "TIME name median_s".
/// Each round runs them in a new order (a fixed-seed shuffle): a step runs slower right after
/// some others — at tiny, whichever Unfold LSTM ran second after libtorch's LSTMCell loop took
/// 0.57-0.63 ms and the other 0.54-0.57 ms, built-in and user cell alike when their places were
/// swapped — so a fixed order would charge that to whichever step happens to follow.
void alternate(const std::vector<std::pair<std::string, std::function<void()>>>& steps, int reps)
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

void child_time(const config& c, int reps)
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
#else
    alternate({{"unfold.rnn", unfold_step(rnn, x)}, {"gemm.1", g1.run}}, reps);
    alternate({{"unfold.gru", unfold_step(gru, x)}, {"gemm.3", g3.run}}, reps);
    alternate({{"unfold.lstm", unfold_step(lstm, x)},
               {"unfold.user_lstm", unfold_step(user, x)},
               {"gemm.4", g4.run}},
              reps);
#endif
}

/// The threading section's child (started with OPENBLAS_NUM_THREADS=2): each model's step on one
/// thread and on two with the policy, alternately, and libtorch's LSTM on 1 and 2 threads.
void child_threads(const config& c, int reps)
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
            set_blas_threads(threads);
            step();
        };
    };
    alternate({{"torch.lstm.1", torch_on(1, torch_layer_step(t_lstm, tx))},
               {"torch.lstm.2", torch_on(2, torch_layer_step(t_lstm, tx))}},
              reps);
#endif
}

void child_memory(const config& c, const std::string& impl)
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

/// The per-op cost of the tape: a chain of 1,000 elementwise ops on 16-element tensors (tanh,
/// mul, add, sigmoid in turn), forward + backward. Prints "OPS name seconds_per_op".
void child_ops(int reps)
{
    constexpr int chain = 1000;
    const std::size_t n = 16;
    std::vector<std::pair<std::string, std::function<void()>>> steps;
    steps.emplace_back("unfold", [n] {
        tape t;
        const var x = t.variable(full({n}, real(0.5)));
        const var k = t.constant(full({n}, real(0.9)));
        var y = x;
        for (int i = 0; i < chain; ++i)
            switch (i % 4)
            {
            case 0: y = unfold::tanh(y); break;
            case 1: y = y * k; break;
            case 2: y = y + k; break;
            default: y = sigmoid(y); break;
            }
        t.backward(sum(y));
    });
#ifdef UNFOLD_BENCH_TORCH
    steps.emplace_back("torch", [n] {
        auto x = torch::full({long(n)}, 0.5, torch::requires_grad());
        auto k = torch::full({long(n)}, 0.9);
        torch::Tensor y = x;
        for (int i = 0; i < chain; ++i)
            switch (i % 4)
            {
            case 0: y = torch::tanh(y); break;
            case 1: y = y * k; break;
            case 2: y = y + k; break;
            default: y = torch::sigmoid(y); break;
            }
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

// ---------------------------------------------------------------------------------------------
// The driver

std::string self_dir()
{
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    std::string p(buf);
    return p.substr(0, p.rfind('/'));
}

/// Runs `program args…` and returns its standard output lines.
std::vector<std::string> run_child(const std::string& program, const std::vector<std::string>& args,
                                   const std::map<std::string, std::string>& env = {})
{
    int fd[2];
    if (pipe(fd) != 0)
        std::exit(3);
    const pid_t pid = fork();
    if (pid == 0)
    {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        for (const auto& [name, value] : env)
            setenv(name.c_str(), value.c_str(), 1);
        std::vector<char*> argv{const_cast<char*>(program.c_str())};
        for (const auto& a : args)
            argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(program.c_str(), argv.data());
        std::perror("execv");
        _exit(127);
    }
    close(fd[1]);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd[0], buf, sizeof buf)) > 0)
        out.append(buf, std::size_t(n));
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        std::fprintf(stderr, "child %s failed (status %d)\n", program.c_str(), status);
    std::vector<std::string> lines;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line))
        lines.push_back(line);
    return lines;
}

struct config_result
{
    std::map<std::string, double> time;              // name -> seconds
    std::map<std::size_t, std::pair<double, double>> gemm; // gates -> flops, seconds
    double mem_unfold = 0, mem_unfold_base = 0, mem_torch = 0, mem_torch_base = 0;
};

config_result run_config(const config& c, int reps, bool have_torch)
{
    const std::string dir = self_dir();
    const std::string self = dir + "/" + (have_torch ? "unfold_bench_torch" : "unfold_bench");
    config_result r;
    for (const auto& line : run_child(self, {"--child-time", c.name, std::to_string(reps)}))
    {
        std::istringstream in(line);
        std::string tag;
        in >> tag;
        if (tag == "TIME")
        {
            std::string name;
            double s;
            in >> name >> s;
            r.time[name] = s;
        }
        else if (tag == "FLOPS")
        {
            std::size_t gates;
            double f;
            in >> gates >> f;
            r.gemm[gates].first = f;
        }
    }
    for (auto& [gates, fs] : r.gemm)
    {
        const std::string name = "gemm." + std::to_string(gates);
        fs.second = r.time.count(name) ? r.time.at(name) : 0;
    }
    auto memory = [&](const std::string& program, const std::string& impl, double& base,
                      double& peak) {
        for (const auto& line : run_child(program, {"--child-mem", c.name, impl}))
        {
            std::istringstream in(line);
            std::string tag;
            in >> tag;
            if (tag == "MEM")
                in >> base >> peak;
        }
    };
    memory(dir + "/unfold_bench", "unfold", r.mem_unfold_base, r.mem_unfold);
    if (have_torch)
        memory(self, "torch", r.mem_torch_base, r.mem_torch);
    return r;
}

void print_report(const std::vector<std::pair<config, config_result>>& results, bool have_torch)
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
    const row rows[] = {{"RNN", "unfold.rnn", "torch.rnn", 1},
                        {"GRU", "unfold.gru", "torch.gru", 3},
                        {"LSTM", "unfold.lstm", "torch.lstm", 4},
                        {"LSTM, user cell / LSTMCell loop", "unfold.user_lstm", "torch.lstm_cell",
                         4}};
    for (const auto& [c, r] : results)
        for (const row& w : rows)
        {
            const double u = r.time.count(w.unfold) ? r.time.at(w.unfold) : 0;
            const double t = have_torch && r.time.count(w.torch) ? r.time.at(w.torch) : 0;
            const auto [flops, bound] = r.gemm.count(w.gates) ? r.gemm.at(w.gates)
                                                              : std::pair<double, double>{0, 0};
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
    std::printf("\nPeak RSS (VmHWM) of a process running two LSTM steps; in parentheses the RSS "
                "before the model ran (libraries loaded):\n\n| config | Unfold MB | libtorch MB "
                "|\n|---|---|---|\n");
    for (const auto& [c, r] : results)
    {
        char torch_mb[64] = "–";
        if (have_torch)
            std::snprintf(torch_mb, sizeof torch_mb, "%.0f (%.0f)", r.mem_torch,
                          r.mem_torch_base);
        std::printf("| %s | %.0f (%.0f) | %s |\n", c.name.c_str(), r.mem_unfold,
                    r.mem_unfold_base, torch_mb);
    }
}

struct threads_result
{
    std::map<std::string, double> time; // name -> seconds
    double others = 0;                   // share of a core other processes used meanwhile
};

threads_result run_threads(const config& c, int reps, bool have_torch)
{
    const std::string self =
        self_dir() + "/" + (have_torch ? "unfold_bench_torch" : "unfold_bench");
    threads_result r;
    const cpu_use a = cpu_now(RUSAGE_CHILDREN);
    for (const auto& line : run_child(self, {"--child-threads", c.name, std::to_string(reps)},
                                      {{"OPENBLAS_NUM_THREADS", "2"}, {"OMP_NUM_THREADS", "2"}}))
    {
        std::istringstream in(line);
        std::string tag, name;
        double t;
        in >> tag >> name >> t;
        if (tag == "TIME")
            r.time[name] = t;
    }
    const cpu_use b = cpu_now(RUSAGE_CHILDREN);
    r.others = others_busy(a, b);
    return r;
}

void print_threads(const std::vector<std::pair<config, threads_result>>& results, bool have_torch)
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

} // namespace

int main(int argc, char** argv)
{
#ifdef UNFOLD_BENCH_TORCH
    const bool have_torch = true;
#else
    const bool have_torch = false;
#endif
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 3 && args[0] == "--child-threads")
    {
        // Started with OPENBLAS_NUM_THREADS=2: the step functions set their own thread counts.
        child_threads(config_named(args[1]), std::atoi(args[2].c_str()));
        return 0;
    }
    set_blas_threads(1);
#ifdef UNFOLD_BENCH_TORCH
    at::set_num_threads(1);
#endif
    if (args.size() == 3 && args[0] == "--child-time")
    {
        child_time(config_named(args[1]), std::atoi(args[2].c_str()));
        return 0;
    }
    if (args.size() == 3 && args[0] == "--child-mem")
    {
        child_memory(config_named(args[1]), args[2]);
        return 0;
    }
    if (args.size() == 2 && args[0] == "--child-ops")
    {
        child_ops(std::atoi(args[1].c_str()));
        return 0;
    }

    bool quick = false, threads = true, single = true;
    int reps = 0;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < args.size(); ++i)
    {
        if (args[i] == "--quick")
            quick = true;
        else if (args[i] == "--no-threads")
            threads = false;
        else if (args[i] == "--threads-only")
            single = false;
        else if (args[i] == "--reps" && i + 1 < args.size())
            reps = std::atoi(args[++i].c_str());
        else if (args[i] == "--configs" && i + 1 < args.size())
        {
            std::istringstream in(args[++i]);
            std::string name;
            while (std::getline(in, name, ','))
                names.push_back(name);
        }
        else
        {
            std::fprintf(stderr, "usage: %s [--quick] [--configs tiny,small,medium,large] "
                                 "[--reps N] [--no-threads|--threads-only]\n", argv[0]);
            return 2;
        }
    }
    if (names.empty())
        names = quick ? std::vector<std::string>{"tiny", "small", "medium"}
                      : std::vector<std::string>{"tiny", "small", "medium", "large"};
    // Children inherit one-thread settings from the start (OpenBLAS reads them when it loads).
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    setenv("OMP_NUM_THREADS", "1", 1);

    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    std::printf("Unfold training-step benchmark (%s), float32, one step = forward + backward of "
                "sum(outputs)\n",
                quick ? "quick" : "full");
    std::printf("threads: OpenBLAS %d (kernel %s, OPENBLAS_CORETYPE=%s)", blas_threads(),
                blas_core().c_str(), coretype ? coretype : "unset");
#ifdef UNFOLD_BENCH_TORCH
    std::printf(", libtorch intra-op %d (libtorch %s)\n", at::get_num_threads(), TORCH_VERSION);
#else
    std::printf("; libtorch not built in: its columns are skipped\n");
#endif
    std::printf("load average at start: %s; medians of alternating repetitions, each config in "
                "fresh child processes\n",
                loadavg().c_str());
    std::fflush(stdout);

    if (single)
    {
        std::vector<std::pair<config, config_result>> results;
        for (const auto& name : names)
        {
            const config& c = config_named(name);
            const int n = reps > 0 ? reps : (quick ? c.quick_reps : c.reps);
            std::fprintf(stderr, "running %s (%d repetitions)…\n", name.c_str(), n);
            results.emplace_back(c, run_config(c, n, have_torch));
        }
        print_report(results, have_torch);

        const std::string self =
            self_dir() + "/" + (have_torch ? "unfold_bench_torch" : "unfold_bench");
        std::printf("\nTape per-op cost: a chain of 1,000 elementwise ops on 16-element tensors, "
                    "forward + backward:\n\n| | µs per op |\n|---|---|\n");
        for (const auto& line : run_child(self, {"--child-ops", quick ? "11" : "31"}))
        {
            std::istringstream in(line);
            std::string tag, name;
            double s;
            in >> tag >> name >> s;
            if (tag == "OPS")
                std::printf("| %s | %.3f |\n", name == "unfold" ? "Unfold" : "libtorch",
                            s * 1e6);
        }
    }

    if (threads)
    {
        std::printf("\nload average before the threading section: %s\n", loadavg().c_str());
        std::fflush(stdout);
        std::vector<std::pair<config, threads_result>> results;
        for (const auto& name : names)
        {
            const config& c = config_named(name);
            const int n = reps > 0 ? reps : (quick ? c.quick_reps : c.reps);
            std::fprintf(stderr, "running %s on 1 and 2 threads (%d repetitions)…\n",
                         name.c_str(), n);
            results.emplace_back(c, run_threads(c, n, have_torch));
        }
        print_threads(results, have_torch);
    }
    std::printf("\nload average at end: %s\n", loadavg().c_str());
    return 0;
}
