// Learning-rate schedules at a few steps, by hand.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "test_util.hpp"
#include <unfold/framework/optimizer.hpp>
#include <unfold/framework/schedule.hpp>

using namespace unfold;
using unfold::testing::expect_error;
namespace tt = boost::test_tools;

BOOST_AUTO_TEST_SUITE(schedules)

BOOST_AUTO_TEST_CASE(step_decay_multiplies_by_gamma_every_step_size_steps)
{
    const schedule s = step_decay(0.1, 3, 0.5);
    BOOST_TEST(s(0) == 0.1, tt::tolerance(1e-15));
    BOOST_TEST(s(2) == 0.1, tt::tolerance(1e-15));
    BOOST_TEST(s(3) == 0.05, tt::tolerance(1e-15));
    BOOST_TEST(s(5) == 0.05, tt::tolerance(1e-15));
    BOOST_TEST(s(6) == 0.025, tt::tolerance(1e-15));
    BOOST_TEST(s(10) == 0.1 * 0.125, tt::tolerance(1e-15));
    expect_error([] { (void)step_decay(0.1, 0, 0.5); }, {"step_decay", "step_size"});
}

BOOST_AUTO_TEST_CASE(cosine_annealing_goes_from_base_to_eta_min)
{
    const schedule s = cosine_annealing(1.0, 4, 0.2);
    BOOST_TEST(s(0) == 1.0, tt::tolerance(1e-15));
    // t = 1: 0.2 + 0.8 (1 + cos(π/4)) / 2 = 0.2 + 0.4 (1 + √2/2)
    BOOST_TEST(s(1) == 0.2 + 0.4 * (1 + std::sqrt(2.0) / 2), tt::tolerance(1e-15));
    BOOST_TEST(s(2) == 0.6, tt::tolerance(1e-15));
    BOOST_TEST(s(3) == 0.2 + 0.4 * (1 - std::sqrt(2.0) / 2), tt::tolerance(1e-14));
    BOOST_TEST(s(4) == 0.2, tt::tolerance(1e-15));
    BOOST_TEST(s(100) == 0.2, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(linear_warmup_alone_and_in_front_of_cosine)
{
    const schedule alone = linear_warmup(4, 0.8);
    BOOST_TEST(alone(0) == 0.2, tt::tolerance(1e-15));
    BOOST_TEST(alone(1) == 0.4, tt::tolerance(1e-15));
    BOOST_TEST(alone(3) == 0.8, tt::tolerance(1e-15));
    BOOST_TEST(alone(50) == 0.8, tt::tolerance(1e-15));

    // Two warm-up steps, then cosine from its own step 0.
    const schedule s = linear_warmup(2, cosine_annealing(1.0, 4, 0.2));
    BOOST_TEST(s(0) == 0.5, tt::tolerance(1e-15));
    BOOST_TEST(s(1) == 1.0, tt::tolerance(1e-15));
    BOOST_TEST(s(2) == 1.0, tt::tolerance(1e-15));
    BOOST_TEST(s(4) == 0.6, tt::tolerance(1e-15));
    BOOST_TEST(s(6) == 0.2, tt::tolerance(1e-15));

    const schedule none = linear_warmup(0, step_decay(0.1, 1, 0.5));
    BOOST_TEST(none(1) == 0.05, tt::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(an_optimiser_follows_a_schedule)
{
    param p("w", tensor{0.0});
    sgd opt({p});
    const schedule s = step_decay(1.0, 1, 0.5);
    for (std::size_t t = 0; t < 3; ++t) // steps of 1, 0.5, 0.25 with gradient 1
    {
        p.grad() = tensor{1.0};
        opt.set_lr(s(t));
        opt.step();
    }
    BOOST_TEST(p.value()(0) == -1.75f);
}

BOOST_AUTO_TEST_SUITE_END()
