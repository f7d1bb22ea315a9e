// Data-parallel training throughput (Note [Data parallelism] in framework/data_parallel.hpp), run
// under mpiexec -n N by bench/data_parallel.py beside PyTorch's DistributedDataParallel. Every
// rank trains an LSTM layer of a benchmark config on B sequences of its own (or, with --split,
// on B / N of one global batch): forward, backward of the outputs' mean, the gradients averaged
// over the ranks by a gradient_averager (none with one rank), an SGD step. One BLAS thread per
// process. Rank 0 prints one JSON line: the config, ranks, sequences per step per rank, the
// median seconds per step (the slowest rank's, between barriers), sequences per second, the bytes
// all-reduced per step, how long backward still ran after the first and last buckets started, and
// the median time in finish(): the communication backward did not hide.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.hpp"
#include <unfold/framework/data_parallel.hpp>
#include <unfold/framework/distributed/mpi.hpp>
#include <unfold/framework/optimizer.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/threads.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/ops/scale_shift.hpp>
#include <unfold/ops/sum.hpp>

using namespace unfold;
using namespace unfold::bench;

int main(int argc, char** argv)
{
    set_num_threads(1);
    mpi_communicator world;
    std::string name = "medium";
    std::size_t layers = 1, reps = 0, warmup = 2;
    bool split = false;
    gradient_averager_options ao;
    for (int i = 1; i < argc; ++i)
    {
        const std::string a = argv[i];
        const auto next = [&] {
            if (i + 1 >= argc)
            {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return std::string(argv[++i]);
        };
        if (a == "--config")
            name = next();
        else if (a == "--layers")
            layers = std::stoul(next());
        else if (a == "--reps")
            reps = std::stoul(next());
        else if (a == "--warmup")
            warmup = std::stoul(next());
        else if (a == "--bucket-bytes")
            ao.bucket_bytes = std::stoul(next());
        else if (a == "--split")
            split = true;
        else
        {
            std::fprintf(stderr,
                         "usage: mpiexec -n N %s [--config medium|large] [--layers L] [--reps R] "
                         "[--warmup W] [--bucket-bytes N] [--split]\n",
                         argv[0]);
            return 2;
        }
    }
    const config* c = nullptr;
    for (const config& x : benchmark_configs())
        if (x.name == name)
            c = &x;
    if (!c)
    {
        std::fprintf(stderr, "unknown config %s\n", name.c_str());
        return 2;
    }
    if (reps == 0)
        reps = std::size_t(c->reps) * 2;
    const int ranks = world.size();
    const std::size_t B = split ? c->B / std::size_t(ranks) : c->B;

    param_store store;
    generator init(1);
    layer_options lo;
    lo.num_layers = layers;
    const auto lstm = lstm_layer(store, c->I, c->H, init, lo);
    broadcast_parameters(world, store);
    generator data(100 + std::uint64_t(world.rank()));
    const tensor x = data.uniform({c->T, B, c->I}, -1, 1);
    sgd_options so;
    so.lr = 1e-3;
    sgd opt(params_of(store), so);
    std::unique_ptr<gradient_averager> averager;
    if (ranks > 1)
        averager = std::make_unique<gradient_averager>(world, params_of(store), ao);

    std::vector<double> finishing; // seconds in finish(): the communication backward did not hide
    const auto step = [&] {
        tape t;
        if (averager)
            averager->watch(t);
        const layer_result r = lstm(t, t.constant(x));
        opt.zero_grad();
        t.backward(sum(r.output) * real(1.0 / double(r.output.size())));
        if (averager)
        {
            const auto start = clock_type::now();
            averager->finish();
            finishing.push_back(seconds_since(start));
        }
        opt.step();
    };
    for (std::size_t i = 0; i < warmup; ++i)
        step();
    std::vector<double> seconds;
    for (std::size_t i = 0; i < reps; ++i)
    {
        world.barrier();
        const auto start = clock_type::now();
        step();
        world.barrier(); // the slowest rank's step
        seconds.push_back(seconds_since(start));
    }
    if (world.rank() == 0)
    {
        const double s = median(seconds);
        std::printf("{\"impl\": \"unfold\", \"config\": \"%s\", \"layers\": %zu, \"ranks\": %d, "
                    "\"batch_per_rank\": %zu, \"seconds_per_step\": %.6f, "
                    "\"sequences_per_second\": %.2f, \"allreduced_bytes\": %zu, \"buckets\": %zu, "
                    "\"first_bucket_overlap_ms\": %.3f, \"last_bucket_overlap_ms\": %.3f, "
                    "\"exposed_ms\": %.3f}\n",
                    c->name.c_str(), layers, ranks, B, s, double(B) * ranks / s,
                    store.element_count() * sizeof(real), averager ? averager->buckets() : 0,
                    averager ? averager->seconds_overlapped(0) * 1e3 : 0.0,
                    averager ? averager->seconds_overlapped(averager->buckets() - 1) * 1e3 : 0.0,
                    median(finishing) * 1e3);
        std::fflush(stdout);
    }
    return 0;
}
