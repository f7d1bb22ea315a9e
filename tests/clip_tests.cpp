// Gradient clipping by global norm and by value, checked by hand.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>

#include "test_util.hpp"
#include <unfold/framework/clip.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

BOOST_AUTO_TEST_SUITE(clipping)

BOOST_AUTO_TEST_CASE(norm_is_global_over_all_parameters)
{
    // ‖(3, 4)‖ and ‖(12,)‖ together: √(9 + 16 + 144) = 13. max_norm 6.5 halves every gradient
    // (scale 6.5 / (13 + 1e-6)).
    param a("a", zeros({2})), b("b", zeros({1, 1}));
    a.grad() = tensor{3.0, -4.0};
    b.grad() = full({1, 1}, 12);
    const double total = clip_grad_norm({a, b}, 6.5);
    BOOST_TEST(total == 13.0, boost::test_tools::tolerance(1e-12));
    const double scale = 6.5 / (13.0 + 1e-6);
    BOOST_TEST(max_abs_diff(a.grad(), tensor{real(3.0 * scale), real(-4.0 * scale)}) < 1e-6);
    BOOST_TEST(max_abs_diff(b.grad(), full({1, 1}, real(12.0 * scale))) < 1e-6);
    BOOST_TEST(a.value()(0) == 0.0f); // values untouched
}

BOOST_AUTO_TEST_CASE(gradients_within_the_norm_are_unchanged)
{
    param a("a", zeros({2}));
    a.grad() = tensor{3.0, -4.0};
    BOOST_TEST(clip_grad_norm({a}, 5.0) == 5.0, boost::test_tools::tolerance(1e-12));
    // scale = 5 / (5 + 1e-6) < 1: PyTorch still scales, by 1 − 2e-7.
    BOOST_TEST(max_abs_diff(a.grad(), tensor{3.0, -4.0}) < 1e-6);
    a.grad() = tensor{0.3, -0.4};
    clip_grad_norm({a}, 1.0);
    BOOST_TEST(max_abs_diff(a.grad(), tensor{0.3, -0.4}) == 0.0);
}

BOOST_AUTO_TEST_CASE(a_non_finite_norm_is_returned_and_gradients_left_alone)
{
    param a("a", zeros({2}));
    a.grad() = tensor{std::numeric_limits<real>::infinity(), 1.0};
    BOOST_TEST(std::isinf(clip_grad_norm({a}, 1.0)));
    BOOST_TEST(a.grad()(1) == 1.0f);
    expect_error([&] { clip_grad_norm({a}, -1.0); }, {"clip_grad_norm", "negative"});
}

BOOST_AUTO_TEST_CASE(value_clamps_each_element)
{
    param a("a", zeros({2, 2}));
    a.grad() = tensor{{0.5, -2.0}, {1.5, -0.25}};
    clip_grad_value({a}, 1.0);
    BOOST_TEST(max_abs_diff(a.grad(), tensor{{0.5, -1.0}, {1.0, -0.25}}) == 0.0);
    expect_error([&] { clip_grad_value({a}, -0.5); }, {"clip_grad_value", "negative"});
}

BOOST_AUTO_TEST_SUITE_END()
