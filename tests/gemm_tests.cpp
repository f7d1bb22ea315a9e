// The GEMM backends (Note [GEMM backends] in framework/gemm.hpp): every backend of this build
// against a double-precision reference at every GEMM shape the benchmarks and the language model
// run, transposes and beta = 1 accumulation included; the policy sends each product where it says.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "test_util.hpp"
#include <unfold/framework/gemm.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tensor.hpp>

using namespace unfold;
using unfold::testing::expect_error;

namespace unfold
{
std::ostream& operator<<(std::ostream& out, gemm_backend b) { return out << gemm_backend_name(b); }
} // namespace unfold

namespace
{
/// Restores the policy after a test forces a backend.
struct restore_backend
{
    gemm_backend saved = forced_gemm_backend();
    ~restore_backend() { set_gemm_backend(saved); }
};

struct gemm_shape
{
    bool ta, tb;
    std::size_t m, n, k;
};

/// The shapes of bench/gemm_backends: per config (B, T, I, H) and gate count g, G = g·H, x·W_ihᵀ,
/// h·W_hhᵀ, dh, dx, dW_ih and dW_hh per step; the language model's layers and head; and products
/// with both operands transposed.
std::vector<gemm_shape> benchmarked_shapes()
{
    struct cfg
    {
        std::size_t B, T, I, H;
    };
    std::vector<gemm_shape> shapes;
    auto layer = [&](std::size_t B, std::size_t T, std::size_t I, std::size_t G, std::size_t H) {
        const std::size_t BT = B * T;
        shapes.push_back({false, true, BT, G, I});
        shapes.push_back({false, true, B, G, H});
        shapes.push_back({false, false, B, H, G});
        shapes.push_back({false, false, BT, I, G});
        shapes.push_back({true, false, G, I, BT});
        shapes.push_back({true, false, G, H, B});
    };
    for (const cfg c :
         {cfg{1, 100, 16, 32}, cfg{16, 50, 64, 128}, cfg{32, 35, 256, 256}, cfg{64, 100, 512, 512}})
        for (const std::size_t gates : {1, 3, 4})
            layer(c.B, c.T, c.I, gates * c.H, c.H);
    layer(50, 50, 64, 512, 128);
    layer(50, 50, 128, 512, 128);
    shapes.push_back({false, true, 2500, 100, 128});
    shapes.push_back({false, false, 2500, 128, 100});
    shapes.push_back({true, false, 100, 128, 2500});
    shapes.push_back({true, true, 7, 5, 3});
    shapes.push_back({true, true, 64, 96, 130});
    return shapes;
}

/// The backends this build can force.
std::vector<gemm_backend> backends()
{
    std::vector<gemm_backend> b{gemm_backend::cblas};
    if (gemm_backend_available(gemm_backend::dnnl))
        b.push_back(gemm_backend::dnnl);
    return b;
}
} // namespace

BOOST_AUTO_TEST_SUITE(gemm_backends)

BOOST_AUTO_TEST_CASE(every_backend_matches_a_double_reference_at_every_benchmarked_shape)
{
    const restore_backend restore;
    generator g(3);
    const auto shapes = benchmarked_shapes();
    BOOST_TEST_MESSAGE(shapes.size() << " shapes on " << backends().size() << " backend(s)");
    for (const gemm_shape& s : shapes)
    {
        const tensor a = g.uniform({s.m * s.k}, -1, 1), b = g.uniform({s.k * s.n}, -1, 1);
        const tensor c0 = g.uniform({s.m * s.n}, -1, 1);
        // op(A)(i, l) and op(B)(l, j) of the row-major buffers.
        auto a_at = [&](std::size_t i, std::size_t l) {
            return double(s.ta ? a.data()[l * s.m + i] : a.data()[i * s.k + l]);
        };
        auto b_at = [&](std::size_t l, std::size_t j) {
            return double(s.tb ? b.data()[j * s.k + l] : b.data()[l * s.n + j]);
        };
        // Every entry of small products, a fixed sample of 997 entries of large ones.
        const std::size_t entries = s.m * s.n;
        const std::size_t stride =
            entries * s.k > 50'000'000 ? std::max<std::size_t>(1, entries / 997) : 1;
        for (const gemm_backend backend : backends())
            for (const real beta : {real(0), real(1)})
            {
                set_gemm_backend(backend);
                tensor c = c0;
                gemm(s.ta, s.tb, s.m, s.n, s.k, real(0.5), a.data(), b.data(), beta, c.data());
                double worst = 0; // error over its bound
                for (std::size_t e = 0; e < entries; e += stride)
                {
                    const std::size_t i = e / s.n, j = e % s.n;
                    double exact = double(beta) * double(c0.data()[e]), magnitude = 1;
                    for (std::size_t l = 0; l < s.k; ++l)
                    {
                        exact += 0.5 * a_at(i, l) * b_at(l, j);
                        magnitude += 0.5 * std::abs(a_at(i, l) * b_at(l, j));
                    }
                    // float round-off of a k-term sum: well under k·ε·Σ|terms|
                    const double bound = 2.0 * double(s.k + 2) * 1.2e-7 * magnitude;
                    worst = std::max(worst, std::abs(double(c.data()[e]) - exact) / bound);
                }
                BOOST_TEST(worst <= 1.0, gemm_backend_name(backend)
                                             << " " << s.m << "×" << s.n << "×" << s.k << " ("
                                             << (s.ta ? "T" : "N") << (s.tb ? "T" : "N")
                                             << "), beta " << beta << ": error " << worst
                                             << " × its round-off bound");
            }
    }
}

BOOST_AUTO_TEST_CASE(the_policy_sends_each_product_where_it_says)
{
    const restore_backend restore;
    // Pure: A not transposed → oneDNN when the build has it, A transposed → the CBLAS.
    BOOST_TEST(gemm_backend_for(false, true, 50, 512, 128, true) == gemm_backend::dnnl);
    BOOST_TEST(gemm_backend_for(false, false, 50, 128, 512, true) == gemm_backend::dnnl);
    BOOST_TEST(gemm_backend_for(true, false, 512, 128, 50, true) == gemm_backend::cblas);
    BOOST_TEST(gemm_backend_for(true, true, 5, 5, 5, true) == gemm_backend::cblas);
    BOOST_TEST(gemm_backend_for(false, true, 50, 512, 128, false) == gemm_backend::cblas);

    // Live: where gemm() ran, by the per-backend counts.
    const bool dnnl = gemm_backend_available(gemm_backend::dnnl);
    const tensor a = full({16 * 16}, real(1)), b = full({16 * 16}, real(2));
    tensor c = zeros({16 * 16});
    auto runs_on = [&](bool ta) {
        const std::size_t cblas_before = gemm_count(gemm_backend::cblas);
        const std::size_t dnnl_before = gemm_count(gemm_backend::dnnl);
        gemm(ta, true, 16, 16, 16, 1, a.data(), b.data(), 0, c.data());
        BOOST_TEST(c.data()[0] == real(32)); // 16 terms of 1·2
        BOOST_TEST(gemm_count(gemm_backend::cblas) + gemm_count(gemm_backend::dnnl) ==
                   cblas_before + dnnl_before + 1);
        return gemm_count(gemm_backend::dnnl) > dnnl_before ? gemm_backend::dnnl
                                                            : gemm_backend::cblas;
    };
    set_gemm_backend(gemm_backend::automatic);
    BOOST_TEST(runs_on(false) == (dnnl ? gemm_backend::dnnl : gemm_backend::cblas));
    BOOST_TEST(runs_on(true) == gemm_backend::cblas);
    BOOST_TEST(gemm_backend_used(false, true, 16, 16, 16) == runs_on(false));
    set_gemm_backend(gemm_backend::cblas);
    BOOST_TEST(runs_on(false) == gemm_backend::cblas);
    if (dnnl)
    {
        set_gemm_backend(gemm_backend::dnnl);
        BOOST_TEST(runs_on(true) == gemm_backend::dnnl);
    }
}

BOOST_AUTO_TEST_CASE(an_unknown_or_missing_backend_is_a_clear_error)
{
    expect_error([] { detail::gemm_backend_named("mkl", "UNFOLD_GEMM"); },
                 {"UNFOLD_GEMM: unknown GEMM backend 'mkl' (expected auto, cblas or dnnl)"});
    if (!gemm_backend_available(gemm_backend::dnnl))
        expect_error([] { set_gemm_backend(gemm_backend::dnnl); }, {"'dnnl' is not in this build"});
    BOOST_TEST(detail::gemm_backend_named("cblas", "x") == gemm_backend::cblas);
}

BOOST_AUTO_TEST_SUITE_END()
