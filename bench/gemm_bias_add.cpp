/// How addmm's forward y = c + a·bᵀ could run (issue #16's step time, #18's GEMM work): today
/// it copies c into y and runs unfold::gemm with beta = 1 (Note [GEMM backends]); oneDNN's matmul
/// primitive can instead read c itself through a binary-add post-op (no copy), with the weight in
/// its plain layout or reordered once into oneDNN's packed layout (what a recurrent step could do,
/// W_hh being the same at every step). Times the three, alternating, on one thread, at the forward
/// shapes of the benchmarked steps and of the language model (bench/char_lm.py), and checks that
/// they agree. Results go to bench/RESULTS.md; rerun after changing oneDNN or the machine.
///
///     gemm_bias_add [--quick]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <dnnl.hpp>

#include <unfold/framework/gemm.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/framework/threads.hpp>

#include "bench_util.hpp"

namespace
{
using namespace unfold;
using namespace unfold::bench;

/// y = c + a·bᵀ with a (m, k), b (n, k) as PyTorch stores a weight, c and y (m, n).
struct product
{
    std::size_t m, n, k;
};

/// The oneDNN matmul of `p` with c added by a post-op; the weight in PyTorch's (n, k) layout, or,
/// when `packed`, reordered once into the layout oneDNN picks.
struct dnnl_bias_add
{
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    dnnl::matmul matmul;
    dnnl::memory a, b, c, y;

    dnnl_bias_add(const product& p, const tensor& a_, const tensor& b_, const tensor& c_,
                  tensor& y_, bool packed)
    {
        using tag = dnnl::memory::format_tag;
        const auto f32 = dnnl::memory::data_type::f32;
        const dnnl::memory::desc a_md({dnnl::memory::dim(p.m), dnnl::memory::dim(p.k)}, f32,
                                      tag::ab);
        const dnnl::memory::desc b_plain({dnnl::memory::dim(p.k), dnnl::memory::dim(p.n)}, f32,
                                         tag::ba);
        const dnnl::memory::desc b_md({dnnl::memory::dim(p.k), dnnl::memory::dim(p.n)}, f32,
                                      packed ? tag::any : tag::ba);
        const dnnl::memory::desc c_md({dnnl::memory::dim(p.m), dnnl::memory::dim(p.n)}, f32,
                                      tag::ab);
        dnnl::post_ops ops;
        ops.append_binary(dnnl::algorithm::binary_add, c_md);
        dnnl::primitive_attr attr;
        attr.set_post_ops(ops);
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
        matmul = dnnl::matmul(pd);
        a = dnnl::memory(a_md, engine, const_cast<real*>(a_.data()));
        dnnl::memory b_user(b_plain, engine, const_cast<real*>(b_.data()));
        b = dnnl::memory(pd.weights_desc(), engine);
        dnnl::reorder(b_user, b).execute(stream, b_user, b);
        c = dnnl::memory(c_md, engine, const_cast<real*>(c_.data()));
        y = dnnl::memory(c_md, engine, y_.data());
        stream.wait();
    }
    void run()
    {
        matmul.execute(stream, {{DNNL_ARG_SRC, a},
                                {DNNL_ARG_WEIGHTS, b},
                                {DNNL_ARG_DST, y},
                                {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, c}});
        stream.wait();
    }
};

double max_difference(const tensor& x, const tensor& y)
{
    double d = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
        d = std::max(d, double(std::abs(x.data()[i] - y.data()[i])));
    return d;
}

} // namespace

int main(int argc, char** argv)
{
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() > 1 || (args.size() == 1 && args[0] != "--quick"))
    {
        std::fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
        return 2;
    }
    const int reps = args.empty() ? 11 : 5;
    set_num_threads(1);

    std::map<std::tuple<std::size_t, std::size_t, std::size_t>, std::vector<std::string>> shapes;
    for (const config& c : benchmark_configs())
        for (const std::size_t gates : {1, 3, 4})
        {
            const std::string where = c.name + " " + model_of_gates(gates);
            shapes[{c.B, gates * c.H, c.H}].push_back(where + " h·W_hhᵀ");
            shapes[{c.B * c.T, gates * c.H, c.I}].push_back(where + " x·W_ihᵀ");
        }
    shapes[{50, 512, 128}].push_back("char LM h·W_hhᵀ");
    shapes[{2500, 512, 128}].push_back("char LM layer 1 x·W_ihᵀ");
    shapes[{2500, 100, 128}].push_back("char LM head");

    std::printf("c + a·bᵀ on one thread, %s, medians of %d alternating samples of ~4 ms; load "
                "average at start: %s\n\n",
                blas_kernel(), reps, loadavg().c_str());
    std::printf(
        "| m×n×k | where | copy + gemm µs | matmul + add µs | packed matmul + add µs | "
        "matmul/copy | packed/copy | max difference |\n|---|---|---|---|---|---|---|---|\n");
    for (const auto& [s, where] : shapes)
    {
        const auto [m, n, k] = s;
        generator g(7);
        const tensor a = g.uniform({m, k}, -1, 1), b = g.uniform({n, k}, -1, 1),
                     c = g.uniform({m, n}, -1, 1);
        tensor y_copy = zeros({m, n}), y_plain = zeros({m, n}), y_packed = zeros({m, n});
        auto copy_gemm = [&] {
            std::copy(c.data(), c.data() + c.size(), y_copy.data());
            gemm(false, true, m, n, k, 1, a.data(), b.data(), 1, y_copy.data());
        };
        dnnl_bias_add plain({m, n, k}, a, b, c, y_plain, false);
        dnnl_bias_add packed({m, n, k}, a, b, c, y_packed, true);
        auto time = [&](auto&& f, int times) {
            const auto start = clock_type::now();
            for (int i = 0; i < times; ++i)
                f();
            return seconds_since(start) / times * 1e6;
        };
        const int times = std::max(1, int(4000 / time(copy_gemm, 3)));
        std::vector<double> t_copy, t_plain, t_packed;
        for (int r = 0; r < reps; ++r)
        {
            t_copy.push_back(time(copy_gemm, times));
            t_plain.push_back(time([&] { plain.run(); }, times));
            t_packed.push_back(time([&] { packed.run(); }, times));
        }
        const double difference =
            std::max(max_difference(y_copy, y_plain), max_difference(y_copy, y_packed));
        const double copy = median(t_copy), matmul = median(t_plain), pack = median(t_packed);
        std::printf("| %zu×%zu×%zu | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %.1e |\n", m, n, k,
                    joined(where).c_str(), copy, matmul, pack, matmul / copy, pack / copy,
                    difference);
        if (!(difference < 1e-3 * double(k)))
        {
            std::fprintf(stderr, "gemm_bias_add: the three disagree by %g at %zu×%zu×%zu\n",
                         difference, m, n, k);
            return 1;
        }
    }
}
