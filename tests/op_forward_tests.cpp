// Forward values against hand-computed numbers, for the ops with a closed form.
#include <cmath>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/ops/layer_norm.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/sum.hpp>

using namespace unfold;

BOOST_AUTO_TEST_SUITE(op_forward)

BOOST_AUTO_TEST_CASE(matmul_by_hand)
{
    tape t;
    var a = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    var b = t.constant(tensor{{1, 0}, {0, 1}, {2, -1}});
    const tensor expected{{7, -1}, {16, -1}};
    BOOST_TEST(testing::max_abs_diff(matmul(a, b).value(), expected) == 0.0);
    var seq = t.constant(tensor{{{1, 2, 3}}, {{4, 5, 6}}}); // (time 2, batch 1, 3)
    const tensor y = matmul(seq, b).value();
    BOOST_TEST(y.shape() == (shape_type{2, 1, 2}));
    BOOST_TEST(y(1, 0, 0) == 16);
}

BOOST_AUTO_TEST_CASE(layer_norm_by_hand)
{
    tape t;
    const var x = t.variable(tensor{{1, 2, 3, 4}, {2, 2, 2, 2}});
    const var gain = t.variable(tensor{1, 2, 1, 1});
    const var bias = t.variable(tensor{0, 0, 1, 0});
    const var y = layer_norm(x, gain, bias);
    // Row 1: mean 2.5, variance 1.25, so x̂ = (−1.5, −0.5, 0.5, 1.5) / √(1.25 + 1e-5). Row 2 is
    // constant: x̂ = 0 and y = β, finite thanks to ε.
    const double r = 1 / std::sqrt(1.25 + 1e-5);
    const tensor expected{{real(-1.5 * r), real(-1.0 * r), real(0.5 * r + 1), real(1.5 * r)},
                          {0, 0, 1, 0}};
    BOOST_TEST(testing::max_abs_diff(y.value(), expected) < 1e-6);
    BOOST_TEST(y.value()(0, 0) == real(-1.3416355), boost::test_tools::tolerance(real(1e-6)));

    // Every row of dx sums to zero (a shift of x changes nothing), dβ is gy summed over rows and
    // dγ is gy ⊙ x̂ summed over rows.
    t.backward(sum(y * t.constant(tensor{{1, -2, 3, 0.5}, {2, 1, 0, -1}})));
    for (std::size_t row = 0; row < 2; ++row)
    {
        double total = 0, magnitude = 0;
        for (std::size_t j = 0; j < 4; ++j)
            total += x.grad()(row, j), magnitude += std::abs(x.grad()(row, j));
        BOOST_TEST(magnitude > 1.0);
        BOOST_TEST(std::abs(total) < 1e-6 * magnitude);
    }
    BOOST_TEST(testing::max_abs_diff(bias.grad(), tensor{3, -1, 3, -0.5}) < 1e-6);
    BOOST_TEST(testing::max_abs_diff(gain.grad(), tensor{real(-1.5 * r), real(1.0 * r),
                                                         real(1.5 * r), real(0.75 * r)}) < 1e-6);

    testing::expect_error(
        [&] {
            (void)layer_norm(t.constant(zeros({3, 5})), gain, bias);
        },
        {"layer_norm", "(4,)", "(3, 5)"});
    testing::expect_error([&] { (void)layer_norm(x, gain, bias, real(1e-5), 3); },
                          {"layer_norm", "3 groups", "(2, 4)"});

    // Two groups normalise each half of a row on its own: (1, 2 | 3, 4) gives (−1, 1 | −1, 1)
    // up to ε, where one group gives the four values of row 1 above.
    const var halves = layer_norm(t.constant(tensor{{1, 2, 3, 4}}), t.constant(tensor{1, 1, 1, 1}),
                                  t.constant(zeros({4})), real(1e-5), 2);
    const double half = 0.5 / std::sqrt(0.25 + 1e-5);
    BOOST_TEST(testing::max_abs_diff(halves.value(), tensor{{real(-half), real(half), real(-half),
                                                             real(half)}}) < 1e-6);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(op_forward_transposed)

BOOST_AUTO_TEST_CASE(matmul_transposed_by_hand)
{
    tape t;
    var a = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    var w = t.constant(tensor{{1, 0, 2}, {0, 1, -1}}); // (out 2, in 3)
    const tensor expected{{7, -1}, {16, -1}};
    BOOST_TEST(testing::max_abs_diff(matmul_transposed(a, w).value(), expected) == 0.0);
    testing::expect_error(
        [&] {
            (void)matmul_transposed(a, t.constant(zeros({3, 2})));
        },
        {"matmul", "(2, 3)", "(3, 2) transposed"});
}

BOOST_AUTO_TEST_SUITE_END()
