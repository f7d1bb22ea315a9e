/// The sweep behind Note [BLAS threads] (framework/threads.hpp): every GEMM shape of the
/// benchmarked RNN/GRU/LSTM training steps (bench/gemm_bound.hpp, gemm_bound_step) timed on
/// one and on two OpenBLAS threads, alternately, in a process started with OPENBLAS_NUM_THREADS=2
/// (OpenBLAS started with one thread never uses a second; this program re-executes itself with
/// the variable set). Shapes per config (B, T, I, H) and gate count g, G = g·H: x·W_ihᵀ
/// (BT×G×I), h·W_hhᵀ (B×G×H), dh = gy·W_hh (B×H×G), dW_ih = gyᵀ·x (G×I×BT), dW_hh per step
/// (G×H×B). Prints a table sorted by m·n·k with the 2-thread/1-thread time ratio, what the
/// policy (threads_for) picks and the load of other processes meanwhile (a shape measured while
/// they used >10% of a core is measured again). Rerun it after changing OpenBLAS, the machine or
/// the threshold.
///
/// A fifth config, "between" (32, 35, 384, 384), fills the gap in m·n·k between medium's and
/// large's per-step GEMMs.
///
///     gemm_threads [--quick] [--configs tiny,small,medium,between,large] [--reps N]

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
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

/// The benchmarked configs and "between", which is not benchmarked: its per-step GRU GEMMs (14M,
/// dW_hh/step with k = 32) fall in the gap between medium's largest per-step GEMMs (8.4M) and
/// large's smallest (17M).
std::vector<config> sweep_configs()
{
    std::vector<config> configs = benchmark_configs();
    configs.push_back({"between", 32, 35, 384, 384, 0, 0});
    return configs;
}

struct shape
{
    bool ta, tb;
    std::size_t m, n, k;
    bool operator<(const shape& o) const
    {
        return std::tie(m, n, k, ta, tb) < std::tie(o.m, o.n, o.k, o.ta, o.tb);
    }
};

struct timing
{
    double one, two;   // µs per GEMM
    double others = 0; // the share of a core other processes used meanwhile
};

/// Median µs per GEMM on one and on two threads, samples of ~4 ms alternating between the two.
timing time_shape(const shape& s, int reps)
{
    generator g(7);
    const tensor a = g.uniform({s.m * s.k}, -1, 1), b = g.uniform({s.k * s.n}, -1, 1);
    tensor c = zeros({s.m * s.n});
    const int lda = int(s.ta ? s.m : s.k), ldb = int(s.tb ? s.k : s.n);
    auto run = [&](int threads, int times) {
        unfold::set_blas_threads(threads);
        const auto start = clock_type::now();
        for (int i = 0; i < times; ++i)
            detail::cblas_gemm(s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                               int(s.m), int(s.n), int(s.k), 1, a.data(), lda, b.data(), ldb, 1,
                               c.data(), int(s.n));
        return std::chrono::duration<double>(clock_type::now() - start).count() / times * 1e6;
    };
    run(1, 1);
    run(2, 1);
    const int times = std::max(1, int(4000 / run(1, 3))); // one sample ≈ 4 ms
    std::vector<double> one, two;
    for (int r = 0; r < reps; ++r)
    {
        one.push_back(run(1, times));
        two.push_back(run(2, times));
    }
    return {median(one), median(two)};
}

/// time_shape on a quiet machine: a measurement during which other processes used more than 10%
/// of a core (a compile on the second core makes two threads look 3-4× slower) is repeated after
/// a pause, up to 6 times; the last one counts, with its load in the table.
timing time_shape_quietly(const shape& s, int reps)
{
    timing t{};
    for (int attempt = 0; attempt < 6; ++attempt)
    {
        if (attempt)
            std::this_thread::sleep_for(std::chrono::seconds(2));
        const cpu_use a = cpu_now(RUSAGE_SELF);
        t = time_shape(s, reps);
        const cpu_use b = cpu_now(RUSAGE_SELF);
        t.others = others_busy(a, b);
        if (t.others <= 0.1 && b.wall - a.wall >= 0.05) // /proc/stat counts in 10 ms ticks
            break;
    }
    return t;
}

} // namespace

int main(int argc, char** argv)
{
    if (!openblas_set_num_threads || !openblas_get_num_threads)
    {
        std::fprintf(stderr, "gemm_threads: the BLAS is not OpenBLAS; nothing to measure\n");
        return 1;
    }
    const char* env = std::getenv("OPENBLAS_NUM_THREADS");
    if (!env || std::string(env) != "2")
    {
        setenv("OPENBLAS_NUM_THREADS", "2", 1);
        execv("/proc/self/exe", argv);
        std::perror("execv");
        return 1;
    }
    if (openblas_get_num_threads() < 2)
    {
        std::fprintf(stderr, "gemm_threads: OpenBLAS has %d thread(s), needs 2\n",
                     openblas_get_num_threads());
        return 1;
    }

    const std::vector<std::string> args(argv + 1, argv + argc);
    int reps = 15;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < args.size(); ++i)
    {
        if (args[i] == "--quick")
            reps = 7;
        else if (args[i] == "--reps" && i + 1 < args.size())
            reps = std::max(1, std::atoi(args[++i].c_str()));
        else if (args[i] == "--configs" && i + 1 < args.size())
            for (const std::string& name : split_names(args[++i]))
                names.push_back(name);
        else
        {
            std::fprintf(stderr,
                         "usage: %s [--quick] [--configs tiny,small,medium,between,large] "
                         "[--reps N]\n",
                         argv[0]);
            return 2;
        }
    }
    if (names.empty())
        names = {"tiny", "small", "medium", "between", "large"};

    // Every shape once, with the places it occurs.
    std::map<shape, std::vector<std::string>> shapes;
    for (const auto& name : names)
    {
        const std::vector<config> configs = sweep_configs();
        const auto it = std::find_if(configs.begin(), configs.end(),
                                     [&](const config& c) { return c.name == name; });
        if (it == configs.end())
        {
            std::fprintf(stderr, "unknown config %s\n", name.c_str());
            return 2;
        }
        const config& c = *it;
        for (const std::size_t gates : {1, 3, 4})
        {
            const std::size_t G = gates * c.H, BT = c.B * c.T;
            const std::string where = c.name + " " + model_of_gates(gates) + " ";
            shapes[{false, true, BT, G, c.I}].push_back(where + "x·W_ihᵀ");
            shapes[{false, true, c.B, G, c.H}].push_back(where + "h·W_hhᵀ");
            shapes[{false, false, c.B, c.H, G}].push_back(where + "dh");
            shapes[{true, false, G, c.I, BT}].push_back(where + "dW_ih");
            shapes[{true, false, G, c.H, c.B}].push_back(where + "dW_hh/step");
        }
    }

    std::printf("GEMM threads sweep, %s, OpenBLAS %d threads at start, %d reps of ~4 ms "
                "alternating 1 and 2 threads; threshold m·n·k >= %.3g; load average at start: "
                "%s\n\n",
                sizeof(real) == 4 ? "float" : "double", openblas_get_num_threads(), reps,
                parallel_gemm_work, loadavg().c_str());
    std::printf("| m·n·k | m×n×k (op) | where | 1 thread µs | 2 threads µs | 2t/1t | policy | "
                "others' load |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    std::fflush(stdout);
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [s, where] : shapes)
    {
        const timing t = time_shape_quietly(s, reps);
        char line[1024];
        std::snprintf(line, sizeof line,
                      "| %.3g | %zu×%zu×%zu (%s%s) | %s | %.1f | %.1f | %.2f | %d | %.2f |",
                      double(s.m) * double(s.n) * double(s.k), s.m, s.n, s.k, s.ta ? "T" : "N",
                      s.tb ? "T" : "N", joined(where).c_str(), t.one, t.two, t.two / t.one,
                      threads_for(s.m, s.n, s.k, 2), t.others);
        rows.emplace_back(double(s.m) * double(s.n) * double(s.k), line);
    }
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& r : rows)
        std::printf("%s\n", r.second.c_str());
    std::printf("\nload average at end: %s\n", loadavg().c_str());
    return 0;
}
