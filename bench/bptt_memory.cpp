// Memory-planned BPTT (Note [Memory policies] in models/bptt_memory.hpp): one LSTM training step
// over a long sequence under each policy, each in a child process of its own, against keeping
// everything and against PyTorch's nn.LSTM with and without torch.utils.checkpoint
// (bench/bptt_memory_torch.py, Debian's python3-torch) in the same run. Reported: the planner's
// predicted peak, the tape's measured peak, the peak RSS above the child's start, time per step,
// and both as ratios to the same implementation keeping everything, with the input on the tape
// whole and fed by chunks of embedded tokens (PyTorch: an nn.Embedding). Then the large config over
// 10,000 steps, fed by chunks of embedded tokens, under a budget.
//
//   bptt_memory [--T 1000 --B 32 --I 256 --H 256] [--rounds 2] [--steps 3] [--no-torch]
//               [--input whole|embedded|both] [--gemm auto|cblas|dnnl]
//               [--long-only | --no-long] [--long-T 10000] [--long-budget 1536M]
//   bptt_memory --child POLICY T B I H STEPS [embedding]     (one measurement, one JSON line)
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"
#include "child_runner.hpp"
#include <unfold/framework/threads.hpp>
#include <unfold/models/bptt_memory.hpp>
#include <unfold/models/embedding.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/sum.hpp>

using namespace unfold;
using json = nlohmann::json;

namespace
{
/// The resident set size now, in bytes.
std::size_t current_rss()
{
    std::ifstream statm("/proc/self/statm");
    std::size_t pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * std::size_t(sysconf(_SC_PAGESIZE));
}

/// The most the resident set has been, in bytes.
std::size_t peak_rss()
{
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return std::size_t(u.ru_maxrss) * 1024;
}

/// One child: `steps` timed training steps (after one untimed) of an LSTM over T steps of B
/// sequences under `policy`, the loss the sum of every output (recorded inside each step, so
/// that no policy keeps the outputs). The input is a (T, B, I) tensor, or with `embedded` chunks
/// of tokens gathered from an embedding of I features (the input of a long sequence).
int child(const std::string& policy, std::size_t T, std::size_t B, std::size_t I, std::size_t H,
          std::size_t steps, bool embedded)
{
    set_num_threads(1);
    const bptt_memory memory = bptt_memory::parse(policy);
    param_store store;
    generator g(1);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    constexpr std::size_t vocab = 256;
    const embedding embed = embedding::create(store, vocab, I, g, "embed.");
    tensor x;
    std::vector<std::size_t> tokens;
    if (embedded)
    {
        const tensor u = g.uniform({T * B}, 0, real(vocab) - real(0.01));
        for (std::size_t i = 0; i < T * B; ++i)
            tokens.push_back(std::size_t(u(i)));
    }
    else
        x = g.uniform({T, B, I}, -1, 1);
    const bptt_plan plan = plan_unroll(cell, T, B, I, H, memory, false, embedded);
    const std::size_t base = current_rss();
    std::vector<double> ms;
    std::size_t tape_peak = 0;
    for (std::size_t k = 0; k <= steps; ++k)
    {
        store.zero_grad();
        const auto start = bench::clock_type::now();
        tape t;
        const input_sequence xs =
            embedded
                ? input_sequence(T, B, I,
                                 [&](std::size_t first, std::size_t count) {
                                     return embed(
                                         t,
                                         std::vector<std::size_t>(
                                             tokens.begin() + std::ptrdiff_t(first * B),
                                             tokens.begin() + std::ptrdiff_t((first + count) * B)),
                                         {count, B});
                                 })
                : input_sequence(t.constant(x));
        unroll_options o;
        o.memory = memory;
        var loss;
        unroll(cell, t, xs, zero_state<lstm_state>(t, B, H), o,
               [&](std::size_t, const lstm_state& s) {
                   loss = loss.defined() ? loss + sum(s.h) : sum(s.h);
               });
        t.backward(loss);
        tape_peak = std::max(tape_peak, t.peak_bytes());
        if (k > 0)
            ms.push_back(1e3 * bench::seconds_since(start));
    }
    const json out{{"impl", "unfold"},
                   {"policy", policy},
                   {"resolved", plan.policy.str()},
                   {"predicted_bytes", plan.predicted_bytes},
                   {"recomputed_steps", plan.recomputed_steps},
                   {"cheap_steps", plan.cheap_steps},
                   {"tape_peak_bytes", tape_peak},
                   {"rss_peak_above_start_bytes", peak_rss() - base},
                   {"ms_per_step_median", bench::median(ms)},
                   {"ms_per_step_all", ms}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

/// UNFOLD_GEMM for Unfold's children (--gemm): "" leaves the backend to the policy.
std::string gemm_backend_choice;

/// The one JSON line a child printed, or null.
json child_result(const std::string& program, const std::vector<std::string>& args)
{
    std::map<std::string, std::string> env{{"OMP_NUM_THREADS", "1"}, {"OPENBLAS_NUM_THREADS", "1"}};
    if (!gemm_backend_choice.empty())
        env["UNFOLD_GEMM"] = gemm_backend_choice;
    for (const auto& line : bench::run_child(program, args, env))
        if (!line.empty() && line.front() == '{')
            return json::parse(line);
    return nullptr;
}

double mb(const json& j, const char* key) { return j[key].get<double>() / 1e6; }

} // namespace

int main(int argc, char** argv)
{
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "--child")
    {
        if (args.size() < 7)
            return 2;
        auto n = [&](std::size_t i) { return std::size_t(std::stoull(args[i])); };
        return child(args[1], n(2), n(3), n(4), n(5), n(6), args.size() > 7);
    }
    std::map<std::string, std::string> opt{
        {"--T", "1000"},   {"--B", "32"},    {"--I", "256"},        {"--H", "256"},
        {"--rounds", "2"}, {"--steps", "3"}, {"--long-T", "10000"}, {"--long-budget", "1536M"}};
    bool torch = true, long_run = true, short_run = true;
    std::string inputs = "both";
    for (std::size_t i = 0; i < args.size(); ++i)
    {
        if (args[i] == "--no-torch")
            torch = false;
        else if (args[i] == "--no-long")
            long_run = false;
        else if (args[i] == "--long-only")
            short_run = false;
        else if (args[i] == "--input" && i + 1 < args.size())
            inputs = args[++i];
        else if (args[i] == "--gemm" && i + 1 < args.size())
            gemm_backend_choice = args[++i];
        else if (opt.count(args[i]) && i + 1 < args.size())
            opt[args[i]] = args[i + 1], ++i;
        else
        {
            std::fprintf(stderr, "bptt_memory: unknown argument %s\n", args[i].c_str());
            return 2;
        }
    }
    const std::string self = bench::self_dir() + "/bptt_memory";
    const std::string root = UNFOLD_SOURCE_DIR;
    const std::string T = opt["--T"], B = opt["--B"], I = opt["--I"], H = opt["--H"];
    const std::string steps = opt["--steps"];
    if (torch && std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0)
    {
        std::fprintf(stderr, "bptt_memory: /usr/bin/python3 has no torch; Unfold alone\n");
        torch = false;
    }
    std::printf("# Memory-planned BPTT: LSTM B %s, I = H = %s, T = %s, one training step, one "
                "thread, GEMMs %s (load average %s)\n\n",
                B.c_str(), H.c_str(), T.c_str(),
                gemm_backend_choice.empty() ? "by the policy"
                                            : ("on " + gemm_backend_choice).c_str(),
                bench::loadavg().c_str());
    // One table per input: a (T, B, I) tensor on the tape whole, or chunks of embedded tokens
    // recorded inside the steps (what a long sequence's input is: a policy drops them too).
    auto table = [&](bool embedded) {
        const char* input = embedded ? "embedded" : "whole";
        std::printf("## Input %s\n\n",
                    embedded ? "by chunks of embedded tokens (an embedding of 256 tokens)"
                             : "a (T, B, I) tensor, on the tape whole");
        // Budgets as fractions of what keeping everything needs, as the planner predicts it,
        // where the least plan fits them.
        param_store store;
        generator g(1);
        const lstm_cell cell = lstm_cell::create(store, std::stoull(I), std::stoull(H), g);
        auto plan = [&](const bptt_memory& m) {
            return plan_unroll(cell, std::stoull(T), std::stoull(B), std::stoull(I), std::stoull(H),
                               m, false, embedded);
        };
        const std::size_t all = plan(bptt_memory::all()).predicted_bytes;
        std::vector<std::string> policies{"all",      "gemm",     "every:8",
                                          "every:16", "every:32", "every:16,gemm"};
        for (double f : {0.5, 0.45, 0.4, 0.3, 0.1})
        {
            const std::string budget =
                bptt_memory::bytes_str(std::size_t(f * double(all)) >> 20 << 20);
            try
            {
                (void)plan(bptt_memory::parse(budget));
                policies.push_back(budget);
            }
            catch (const error& e)
            {
                std::printf("(budget %s skipped: %s)\n\n", budget.c_str(), e.what());
            }
        }
        const std::string segment = std::to_string(std::lround(std::sqrt(std::stod(T))));
        std::map<std::string, std::vector<json>> runs; // by row, one per round
        for (int round = 0; round < std::stoi(opt["--rounds"]); ++round)
        {
            for (const auto& p : policies)
            {
                std::vector<std::string> args{"--child", p, T, B, I, H, steps};
                if (embedded)
                    args.push_back("embedded");
                runs["unfold " + p].push_back(child_result(self, args));
            }
            if (torch)
                for (const std::string mode : {"plain", "checkpoint"})
                {
                    std::vector<std::string> args{root + "/bench/bptt_memory_torch.py",
                                                  "--mode",
                                                  mode,
                                                  "--T",
                                                  T,
                                                  "--B",
                                                  B,
                                                  "--I",
                                                  I,
                                                  "--H",
                                                  H,
                                                  "--segment",
                                                  segment,
                                                  "--steps",
                                                  steps};
                    if (embedded)
                        args.push_back("--embedded");
                    runs["torch " + mode].push_back(child_result("/usr/bin/python3", args));
                }
        }
        // Per row: the median over rounds of the time, the largest peak.
        auto summary = [&](const std::string& row) {
            for (const json& r : runs[row])
                if (r.is_null())
                    return json(nullptr); // a child failed (its message went to stderr)
            json s = runs[row].front();
            std::vector<double> ms;
            for (const json& r : runs[row])
            {
                ms.push_back(r["ms_per_step_median"].get<double>());
                for (const char* k : {"rss_peak_above_start_bytes", "tape_peak_bytes",
                                      "peak_rss_above_start_bytes"})
                    if (r.contains(k))
                        s[k] = std::max(s[k].get<double>(), r[k].get<double>());
            }
            s["ms"] = bench::median(ms);
            return s;
        };
        const json all_row = summary("unfold all");
        std::printf("| implementation | input | policy | runs as | recomputed steps: whole, "
                    "elementwise | predicted MB | tape peak MB | predicted/tape | peak RSS MB | "
                    "RSS vs keep-all | ms/step | time vs keep-all |\n"
                    "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (const auto& p : policies)
        {
            const json r = summary("unfold " + p);
            if (r.is_null() || all_row.is_null())
            {
                std::printf("| Unfold | %s | %s | failed | | | | | | | | |\n", input, p.c_str());
                continue;
            }
            std::printf("| Unfold | %s | %s | %s | %zu, %zu | %.1f | %.1f | %.3f | %.1f | %.3f | "
                        "%.0f | %.3f |\n",
                        input, p.c_str(), r["resolved"].get<std::string>().c_str(),
                        r["recomputed_steps"].get<std::size_t>(),
                        r["cheap_steps"].get<std::size_t>(), mb(r, "predicted_bytes"),
                        mb(r, "tape_peak_bytes"),
                        r["predicted_bytes"].get<double>() / r["tape_peak_bytes"].get<double>(),
                        mb(r, "rss_peak_above_start_bytes"),
                        r["rss_peak_above_start_bytes"].get<double>() /
                            all_row["rss_peak_above_start_bytes"].get<double>(),
                        r["ms"].get<double>(), r["ms"].get<double>() / all_row["ms"].get<double>());
        }
        if (torch && !summary("torch plain").is_null() && !summary("torch checkpoint").is_null() &&
            !all_row.is_null())
        {
            const json plain = summary("torch plain");
            for (const std::string mode : {"plain", "checkpoint"})
            {
                const json r = summary("torch " + mode);
                std::printf("| PyTorch %s | %s | %s | | | | | | %.1f | %.3f | %.0f | %.3f |\n",
                            r["torch_version"].get<std::string>().c_str(), input,
                            mode == "plain" ? "nn.LSTM"
                                            : ("checkpoint every " + segment + " steps").c_str(),
                            mb(r, "peak_rss_above_start_bytes"),
                            r["peak_rss_above_start_bytes"].get<double>() /
                                plain["peak_rss_above_start_bytes"].get<double>(),
                            r["ms"].get<double>(),
                            r["ms"].get<double>() / plain["ms"].get<double>());
            }
            std::printf("\nKeeping everything, Unfold's peak RSS above start / PyTorch nn.LSTM's: "
                        "%.3f; time %.3f\n",
                        all_row["rss_peak_above_start_bytes"].get<double>() /
                            plain["peak_rss_above_start_bytes"].get<double>(),
                        all_row["ms"].get<double>() / plain["ms"].get<double>());
        }
        std::printf("\n(RSS vs keep-all and time vs keep-all: against the same implementation "
                    "keeping everything; medians of %s rounds, largest peaks.)\n\n",
                    opt["--rounds"].c_str());
    };
    if (short_run)
        for (const bool embedded : {false, true})
            if (inputs == "both" || inputs == (embedded ? "embedded" : "whole"))
                table(embedded);
    if (long_run)
    {
        // The large config over a long sequence: what keeping everything would need, and one
        // step under a budget, fed by chunks of embedded tokens.
        constexpr std::size_t LB = 64, LI = 512, LH = 512;
        const std::size_t LT = std::stoull(opt["--long-T"]);
        param_store store;
        generator g(1);
        const lstm_cell cell = lstm_cell::create(store, LI, LH, g);
        const bptt_plan all = plan_unroll(cell, LT, LB, LI, LH, bptt_memory::all(), false, true);
        const json r = child_result(self, {"--child", opt["--long-budget"], std::to_string(LT),
                                           std::to_string(LB), std::to_string(LI),
                                           std::to_string(LH), "1", "embedded"});
        std::printf("# Large LSTM (B %zu, I = H = %zu) over T = %zu steps\n\n", LB, LH, LT);
        std::printf("Keeping everything would need %.1f GB (%.0f kB per step; this machine has "
                    "24 GB).\n\n",
                    double(all.predicted_bytes) / 1e9,
                    double(all.predicted_bytes) / double(LT) / 1e3);
        if (r.is_null())
            std::printf("the budgeted run failed\n");
        else
            std::printf("| budget | runs as | recomputed steps: whole, elementwise | predicted MB "
                        "| tape peak MB | peak RSS MB | s/step |\n|---|---|---|---|---|---|---|\n"
                        "| %s | %s | %zu, %zu | %.1f | %.1f | %.1f | %.1f |\n",
                        opt["--long-budget"].c_str(), r["resolved"].get<std::string>().c_str(),
                        r["recomputed_steps"].get<std::size_t>(),
                        r["cheap_steps"].get<std::size_t>(), mb(r, "predicted_bytes"),
                        mb(r, "tape_peak_bytes"), mb(r, "rss_peak_above_start_bytes"),
                        r["ms_per_step_median"].get<double>() / 1e3);
    }
    return 0;
}
