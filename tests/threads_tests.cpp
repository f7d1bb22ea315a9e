// The BLAS thread policy (Note [BLAS threads] in framework/threads.hpp): which GEMMs get more than
// one thread, the maximum's round trip, and that a GEMM gives the same result on 1 or 2 threads.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "test_util.hpp"
#include <unfold/framework/gemm.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/framework/threads.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

namespace
{
/// Restores the maximum a test changes.
struct restore_num_threads
{
    int saved = num_threads();
    ~restore_num_threads() { set_num_threads(saved); }
};
} // namespace

BOOST_AUTO_TEST_SUITE(blas_threads)

BOOST_AUTO_TEST_CASE(only_large_gemms_get_more_than_one_thread)
{
    // The per-step GEMMs of the small LSTM config (batch 16, hidden 128) stay on one thread.
    BOOST_TEST(threads_for(16, 512, 128, 2) == 1);
    BOOST_TEST(threads_for(512, 128, 16, 2) == 1);
    BOOST_TEST(threads_for(1, 1, 1, 8) == 1);
    BOOST_TEST(threads_for(0, 0, 0, 2) == 1);
    // Medium (batch 32, hidden 256): the LSTM's h·W_hhᵀ (8.4M) gets two, its dW_hh per step
    // (k = batch = 32) one, however large.
    BOOST_TEST(threads_for(32, 1024, 256, 2) == 2);
    BOOST_TEST(threads_for(1024, 256, 32, 2) == 1);
    BOOST_TEST(threads_for(4096, 4096, 32, 2) == 1);
    // The large config's (batch 64, hidden 512) and its whole-sequence GEMMs get the maximum.
    BOOST_TEST(threads_for(64, 2048, 512, 2) == 2);
    BOOST_TEST(threads_for(2048, 512, 64, 2) == 2);
    BOOST_TEST(threads_for(64, 2048, 512, 4) == 4);
    BOOST_TEST(threads_for(6400, 2048, 512, 2) == 2);
    // With a maximum of one thread, nothing changes.
    BOOST_TEST(threads_for(6400, 2048, 512, 1) == 1);
    // The thresholds themselves: m·n·k at 8e6 with k = 64 parallel, one step below either not.
    const std::size_t k = parallel_gemm_min_k;
    const auto m = static_cast<std::size_t>(parallel_gemm_work) / k;
    BOOST_TEST(double(m) * double(k) == parallel_gemm_work);
    BOOST_TEST(threads_for(m, 1, k, 2) == 2);
    BOOST_TEST(threads_for(m - 1, 1, k, 2) == 1);
    BOOST_TEST(threads_for(2 * m, 1, k - 1, 2) == 1);
}

BOOST_AUTO_TEST_CASE(set_num_threads_round_trips)
{
    restore_num_threads restore;
    BOOST_TEST(num_threads() >= 1);
    set_num_threads(3);
    BOOST_TEST(num_threads() == 3);
    set_num_threads(1);
    BOOST_TEST(num_threads() == 1);
    expect_error([] { set_num_threads(0); }, {"set_num_threads", "0 threads"});
    BOOST_TEST(num_threads() == 1);
}

BOOST_AUTO_TEST_CASE(a_large_gemm_gives_the_same_result_on_one_or_two_threads)
{
    restore_num_threads restore;
    const gemm_backend saved_backend = forced_gemm_backend();
    // 64×2048×512 (the large LSTM's recurrent product) with Bᵀ, above the threshold, on every
    // backend (Note [GEMM backends]): each follows the policy with its own thread control.
    const std::size_t m = 64, n = 2048, k = 512;
    BOOST_REQUIRE(threads_for(m, n, k, 2) == 2);
    generator g(3);
    const tensor a = g.uniform({m, k}, -1, 1), b = g.uniform({n, k}, -1, 1);
    for (const gemm_backend backend : {gemm_backend::cblas, gemm_backend::dnnl})
    {
        if (!gemm_backend_available(backend))
            continue;
        BOOST_TEST_CONTEXT(gemm_backend_name(backend))
        {
            set_gemm_backend(backend);
            // The thread count the policy set for the last GEMM, when the backend's control is
            // linked: OpenBLAS's for cblas, OpenMP's for oneDNN.
            auto threads_set = [&]() -> int {
                if (backend == gemm_backend::dnnl)
                    return omp_get_max_threads ? omp_get_max_threads() : -1;
                return openblas_get_num_threads ? openblas_get_num_threads() : -1;
            };
            tensor one = zeros({m, n}), two = zeros({m, n});
            set_num_threads(1);
            gemm(false, true, m, n, k, 1, a.data(), b.data(), 0, one.data());
            set_num_threads(2);
            gemm(false, true, m, n, k, 1, a.data(), b.data(), 0, two.data());
            if (threads_set() != -1)
                BOOST_TEST(threads_set() == 2);
            // Entries are sums of 512 products in [-1, 1] (|entry| up to ~60); threads split rows
            // and columns, not the k sum, but allow for a different summation order anyway.
            BOOST_TEST(max_abs_diff(one, two) < 1e-3);
            // And both are the product: one entry by hand, in double.
            double c00 = 0;
            for (std::size_t i = 0; i < k; ++i)
                c00 += double(a(0, i)) * double(b(0, i));
            BOOST_TEST(std::abs(double(two(0, 0)) - c00) < 1e-3);
            BOOST_TEST(std::abs(double(one(m - 1, n - 1)) - double(two(m - 1, n - 1))) < 1e-3);
            // A small GEMM afterwards goes back to one thread.
            gemm(false, true, 2, 2, 2, 1, a.data(), b.data(), 0, two.data());
            if (threads_set() != -1)
                BOOST_TEST(threads_set() == 1);
        }
    }
    set_gemm_backend(saved_backend);
}

BOOST_AUTO_TEST_SUITE_END()
