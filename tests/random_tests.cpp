// The explicit random generator (framework/random.hpp): ranges, moments, reproducibility.
#include <cmath>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/framework/random.hpp>

using namespace unfold;

BOOST_AUTO_TEST_SUITE(random_generator)

// Moments over n = 10,000 draws: the sample mean has standard deviation σ/√n = σ/100, and every
// tolerance below is at least 5 of those, so a bad seed fails with probability below 1e-6.

BOOST_AUTO_TEST_CASE(uniform_draws_stay_in_range_with_the_right_mean)
{
    generator g(1);
    const tensor u = g.uniform({10000}, -2, 4);
    BOOST_TEST(xt::amin(u)() >= -2.0);
    BOOST_TEST(xt::amax(u)() < 4.0);
    // U(−2, 4): mean 1, standard deviation 6/√12 = 1.73, so the mean's is 0.0173.
    BOOST_TEST(std::abs(double(xt::mean(u)()) - 1.0) < 0.09);
}

BOOST_AUTO_TEST_CASE(normal_draws_have_the_right_moments)
{
    generator g(2);
    const tensor z = g.normal({10000}, 3, 2);
    const double mean = xt::mean(z)();
    const double var = xt::mean(xt::square(z - real(mean)))();
    BOOST_TEST(std::abs(mean - 3.0) < 0.1); // σ/√n = 0.02
    // The sample variance of a normal has standard deviation σ²·√(2/n) = 0.057.
    BOOST_TEST(std::abs(var - 4.0) < 0.3);
}

BOOST_AUTO_TEST_CASE(bernoulli_draws_are_zero_or_one_with_rate_p)
{
    generator g(3);
    const tensor b = g.bernoulli({10000}, 0.2);
    BOOST_TEST(xt::sum(xt::equal(b, real(0)) || xt::equal(b, real(1)))() == 10000u);
    BOOST_TEST(std::abs(double(xt::mean(b)()) - 0.2) < 0.025); // √(0.16/n) = 0.004
    BOOST_TEST(xt::sum(g.bernoulli({50}, 1))() == 50.0);
    BOOST_TEST(xt::sum(g.bernoulli({50}, 0))() == 0.0);
    unfold::testing::expect_error([&] { (void)g.bernoulli({2}, 1.5); }, {"bernoulli", "1.5"});
}

BOOST_AUTO_TEST_CASE(a_seed_fixes_the_stream)
{
    generator a(42);
    generator b(42);
    const tensor first = a.normal({5});
    BOOST_TEST(unfold::testing::max_abs_diff(first, b.normal({5})) == 0.0);
    BOOST_TEST(unfold::testing::max_abs_diff(first, a.normal({5})) > 0.0); // the stream moved on
    a.seed(42);
    BOOST_TEST(unfold::testing::max_abs_diff(first, a.normal({5})) == 0.0);
    // The first draw of mt19937_64 seeded 42 is 13930160852258120406 (fixed by the standard);
    // next_double keeps its top 53 bits.
    generator c(42);
    BOOST_TEST(c.next_double() == double(13930160852258120406ull >> 11) * 0x1.0p-53);
}

BOOST_AUTO_TEST_SUITE_END()
