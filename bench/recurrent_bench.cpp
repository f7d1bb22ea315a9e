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
///
/// This file is the command line; the parts are user_lstm.hpp (the user-written cell),
/// gemm_bound.hpp, steps.hpp (one training step of each implementation), children.hpp (what each
/// child process measures), child_runner.hpp (starting the children and reading what they print),
/// report.hpp (the tables); bench_util.hpp is shared with gemm_threads.

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.hpp"
#include "child_runner.hpp"
#include "children.hpp"
#include "report.hpp"

#ifdef UNFOLD_BENCH_TORCH
#include <torch/torch.h>
#endif

namespace
{
using namespace unfold::bench;

const config& config_named(const std::string& name)
{
    for (const auto& c : benchmark_configs())
        if (c.name == name)
            return c;
    std::fprintf(stderr, "unknown config %s\n", name.c_str());
    std::exit(2);
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
    unfold::set_blas_threads(1);
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
            for (const std::string& name : split_names(args[++i]))
                names.push_back(name);
        else
        {
            std::fprintf(stderr,
                         "usage: %s [--quick] [--configs tiny,small,medium,large] "
                         "[--reps N] [--no-threads|--threads-only]\n",
                         argv[0]);
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
    std::printf("threads: OpenBLAS %d (kernel %s, OPENBLAS_CORETYPE=%s)", unfold::blas_threads(),
                unfold::blas_kernel(), coretype ? coretype : "unset");
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
                std::printf("| %s | %.3f |\n", name == "unfold" ? "Unfold" : "libtorch", s * 1e6);
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
            std::fprintf(stderr, "running %s on 1 and 2 threads (%d repetitions)…\n", name.c_str(),
                         n);
            results.emplace_back(c, run_threads(c, n, have_torch));
        }
        print_threads(results, have_torch);
    }
    std::printf("\nload average at end: %s\n", loadavg().c_str());
    return 0;
}
