// Forward values of softmax, log_softmax, the losses and dropout against hand-computed numbers and
// PyTorch. Their gradients are checked in double by the op sweep (gradcheck_sweep.cpp).
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/framework/random.hpp>
#include <unfold/ops/cross_entropy.hpp>
#include <unfold/ops/dropout.hpp>
#include <unfold/ops/log_softmax.hpp>
#include <unfold/ops/mse.hpp>
#include <unfold/ops/softmax.hpp>

using namespace unfold;
using unfold::testing::all_finite;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

BOOST_AUTO_TEST_SUITE(losses)

BOOST_AUTO_TEST_CASE(log_softmax_by_hand)
{
    tape t;
    var x = t.variable(tensor{{1, 2, 3}, {0, 0, 0}});
    var y = log_softmax(x);
    const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)); // 3.40760596
    const double third = -std::log(3.0);
    const tensor expected{{real(1 - lse), real(2 - lse), real(3 - lse)},
                          {real(third), real(third), real(third)}};
    BOOST_TEST(max_abs_diff(y.value(), expected) < 1e-6);
    BOOST_TEST(y.value()(0, 2) == real(-0.40760596), boost::test_tools::tolerance(real(1e-6)));

    // Rows are independent: a (2, 1, 3) sequence gives the same numbers.
    var seq = t.constant(tensor{{{1, 2, 3}}, {{0, 0, 0}}});
    const tensor ys = log_softmax(seq).value();
    BOOST_TEST(ys.shape() == (shape_type{2, 1, 3}));
    BOOST_TEST(ys(0, 0, 1) == real(2 - lse), boost::test_tools::tolerance(real(1e-6)));
    BOOST_TEST(ys(1, 0, 2) == real(third), boost::test_tools::tolerance(real(1e-6)));

    // dx = gy − softmax · Σ gy: row 2 has softmax 1/3 and Σ gy = 3, so dx = gy − 1.
    t.backward(y, tensor{{0, 0, 0}, {1, 0, 2}});
    BOOST_TEST(max_abs_diff(x.grad(), tensor{{0, 0, 0}, {0, -1, 1}}) < 1e-6);
    BOOST_TEST(x.grad()(0, 0) == 0.0);
}

BOOST_AUTO_TEST_CASE(softmax_by_hand_and_masked)
{
    tape t;
    var x = t.variable(tensor{{1, 2, 3}, {0, 0, 0}});
    var y = softmax(x);
    const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    const tensor expected{
        {real(std::exp(1.0) / z), real(std::exp(2.0) / z), real(std::exp(3.0) / z)},
        {real(1.0 / 3), real(1.0 / 3), real(1.0 / 3)}};
    BOOST_TEST(max_abs_diff(y.value(), expected) < 1e-6);
    BOOST_TEST(y.value()(0, 2) == real(0.66524096), boost::test_tools::tolerance(real(1e-6)));
    BOOST_TEST(max_abs_diff(y.value(), xt::exp(log_softmax(x).value())) < 1e-6);
    BOOST_TEST(all_finite(softmax(t.constant(tensor{{1000, -1000, 0}})).value()));

    // dx = y ⊙ (gy − Σ gy·y): row 2 has y = 1/3 and Σ gy·y = 1, so dx = (gy − 1) / 3.
    t.backward(y, tensor{{0, 0, 0}, {1, 0, 2}});
    BOOST_TEST(max_abs_diff(x.grad(), tensor{{0, 0, 0}, {0, real(-1.0 / 3), real(1.0 / 3)}}) <
               1e-6);

    // Masked: padded positions get exactly 0, the kept ones the softmax of the kept scores alone,
    // and no gradient reaches a padded score.
    var scores = t.variable(tensor{{1, 2, 3, 50}, {4, -7, 4, 4}});
    var attention = masked_softmax(scores, tensor{{1, 1, 1, 0}, {1, 0, 1, 0}});
    BOOST_TEST(max_abs_diff(xt::view(attention.value(), 0, xt::range(0, 3)),
                            xt::view(expected, 0)) < 1e-6);
    BOOST_TEST(attention.value()(0, 3) == 0.0);
    BOOST_TEST(attention.value()(1, 1) == 0.0);
    BOOST_TEST(attention.value()(1, 3) == 0.0);
    BOOST_TEST(attention.value()(1, 0) == real(0.5), boost::test_tools::tolerance(real(1e-6)));
    t.backward(attention, tensor{{1, 2, 3, 4}, {1, 2, 3, 4}});
    BOOST_TEST(scores.grad()(0, 3) == 0.0);
    BOOST_TEST(scores.grad()(1, 1) == 0.0);
    BOOST_TEST(scores.grad()(1, 0) == real(-0.5), boost::test_tools::tolerance(real(1e-6)));
}

BOOST_AUTO_TEST_CASE(softmax_refuses_a_bad_mask)
{
    tape t;
    var x = t.constant(zeros({2, 3}));
    expect_error(
        [&] {
            (void)masked_softmax(x, tensor{{1, 1}, {1, 1}});
        },
        {"softmax", "mask", "(2, 2)", "(2, 3)"});
    expect_error(
        [&] {
            (void)masked_softmax(x, tensor{{1, 1, 1}, {0, 0, 0}});
        },
        {"softmax", "row 1", "masks out every position"});
    expect_error(
        [&] {
            (void)masked_softmax(x, tensor{{1, 0.5, 1}, {1, 1, 1}});
        },
        {"softmax", "0 (masked out) or 1 (kept)", "0.5"});
    expect_error([&] { (void)softmax(t.constant(full({}, 1))); }, {"softmax", "()"});
}

BOOST_AUTO_TEST_CASE(log_softmax_of_large_logits_is_finite)
{
    tape t;
    var x = t.constant(tensor{{1000, -1000, 0}, {-1000, -1000, -1000}});
    const tensor y = log_softmax(x).value();
    BOOST_TEST(all_finite(y));
    // Row 1: the maximum dominates, exp(−1000) vanishes: (0, −2000, −1000) exactly.
    BOOST_TEST(y(0, 0) == 0.0);
    BOOST_TEST(y(0, 1) == -2000.0);
    BOOST_TEST(y(0, 2) == -1000.0);
    BOOST_TEST(y(1, 1) == real(-std::log(3.0)), boost::test_tools::tolerance(real(1e-6)));
    expect_error([&] { (void)log_softmax(t.constant(full({}, 1))); }, {"log_softmax", "()"});
}

BOOST_AUTO_TEST_CASE(cross_entropy_by_hand)
{
    // Row 1: uniform over 3 classes, loss ln 3. Row 2: softmax (1/2, 1/4, 1/4), target 0: ln 2.
    tape t;
    var x = t.variable(tensor{{0, 0, 0}, {real(std::log(2.0)), 0, 0}});
    var loss = cross_entropy(x, {1, 0});
    BOOST_TEST(loss.dimension() == 0u);
    BOOST_TEST(loss.item() == real(std::log(6.0) / 2), boost::test_tools::tolerance(real(1e-6)));
    // d/dx = (softmax − onehot) / 2 for the mean over 2 rows.
    t.backward(loss);
    const tensor expected{{real(1.0 / 6), real(-1.0 / 3), real(1.0 / 6)},
                          {real(-0.25), real(0.125), real(0.125)}};
    BOOST_TEST(max_abs_diff(x.grad(), expected) < 1e-6);

    var total = cross_entropy(x, {1, 0}, -100, loss_reduction::sum);
    BOOST_TEST(total.item() == real(std::log(6.0)), boost::test_tools::tolerance(real(1e-6)));
    t.backward(total);
    BOOST_TEST(max_abs_diff(x.grad(), tensor(2 * expected)) < 1e-6);
}

BOOST_AUTO_TEST_CASE(cross_entropy_skips_ignored_targets)
{
    // The ignored third row must not change the mean (divided by 2 counted rows, not 3) and gets
    // no gradient.
    tape t;
    var x = t.variable(tensor{{0, 0, 0}, {real(std::log(2.0)), 0, 0}, {5, -3, 1}});
    var loss = cross_entropy(x, {1, 0, -100});
    BOOST_TEST(loss.item() == real(std::log(6.0) / 2), boost::test_tools::tolerance(real(1e-6)));
    t.backward(loss);
    BOOST_TEST(x.grad()(0, 1) == real(-1.0 / 3), boost::test_tools::tolerance(real(1e-6)));
    BOOST_TEST(x.grad()(2, 0) == 0.0);
    BOOST_TEST(x.grad()(2, 1) == 0.0);
    BOOST_TEST(x.grad()(2, 2) == 0.0);

    // A custom ignore index may lie outside [0, C), like PyTorch's −100.
    var custom = cross_entropy(x, {7, 0, 7}, 7);
    BOOST_TEST(custom.item() == real(std::log(2.0)), boost::test_tools::tolerance(real(1e-6)));
}

BOOST_AUTO_TEST_CASE(cross_entropy_with_every_target_ignored_is_zero)
{
    // PyTorch returns NaN here (0/0); Unfold returns 0 and a zero gradient (see the op's comment).
    tape t;
    var x = t.variable(tensor{{1, 2}, {3, 4}});
    var loss = cross_entropy(x, {-100, -100});
    BOOST_TEST(loss.item() == 0.0);
    t.backward(loss);
    BOOST_TEST(xt::amax(xt::abs(x.grad()))() == 0.0);
}

BOOST_AUTO_TEST_CASE(cross_entropy_of_large_logits_is_finite)
{
    tape t;
    var x = t.variable(tensor{{1000, -1000, 0}, {-1000, 1000, 0}});
    var right = cross_entropy(x, {0, 1}); // both rows certain and correct: loss 0
    BOOST_TEST(right.item() == 0.0);
    var wrong = cross_entropy(x, {1, 0}); // both rows certain and wrong: 2000 each
    BOOST_TEST(wrong.item() == 2000.0);
    t.backward(wrong);
    BOOST_TEST(all_finite(x.grad()));
    BOOST_TEST(x.grad()(0, 0) == real(0.5), boost::test_tools::tolerance(real(1e-6)));
    BOOST_TEST(x.grad()(0, 1) == real(-0.5), boost::test_tools::tolerance(real(1e-6)));
}

BOOST_AUTO_TEST_CASE(cross_entropy_treats_leading_axes_as_rows)
{
    // (T, B, C) = (2, 1, 3) with the rows of cross_entropy_by_hand: the same loss.
    tape t;
    var x = t.variable(tensor{{{0, 0, 0}}, {{real(std::log(2.0)), 0, 0}}});
    var loss = cross_entropy(x, {1, 0});
    BOOST_TEST(loss.item() == real(std::log(6.0) / 2), boost::test_tools::tolerance(real(1e-6)));
    t.backward(loss);
    BOOST_TEST(x.grad().shape() == (shape_type{2, 1, 3}));
    BOOST_TEST(x.grad()(1, 0, 0) == real(-0.25), boost::test_tools::tolerance(real(1e-6)));
}

BOOST_AUTO_TEST_CASE(cross_entropy_errors)
{
    tape t;
    var x = t.constant(zeros({2, 3}));
    expect_error(
        [&] {
            (void)cross_entropy(x, {0, 1, 2});
        },
        {"cross_entropy", "3 targets", "(2, 3)", "2 rows"});
    expect_error(
        [&] {
            (void)cross_entropy(x, {0, 3});
        },
        {"cross_entropy", "target 3 at position 1", "[0, 3)", "ignore index -100"});
    expect_error(
        [&] {
            (void)cross_entropy(x, {-1, 0});
        },
        {"cross_entropy", "target -1 at position 0"});
    expect_error([&] { (void)cross_entropy(t.constant(zeros({3})), {0}); },
                 {"cross_entropy", "(3,)", "(N, C)"});
}

BOOST_AUTO_TEST_CASE(mse_by_hand)
{
    // Differences (1, 0, −2, 0): (1 + 0 + 4 + 0) / 4 = 1.25; dp = 2 (p − t) / 4, dt = −dp.
    tape t;
    var p = t.variable(tensor{{1, 2}, {3, 4}});
    var target = t.variable(tensor{{0, 2}, {5, 4}});
    var loss = mse(p, target);
    BOOST_TEST(loss.dimension() == 0u);
    BOOST_TEST(loss.item() == 1.25);
    t.backward(loss);
    BOOST_TEST(max_abs_diff(p.grad(), tensor{{0.5, 0}, {-1, 0}}) == 0.0);
    BOOST_TEST(max_abs_diff(target.grad(), tensor{{-0.5, 0}, {1, 0}}) == 0.0);
    expect_error([&] { (void)mse(p, t.constant(zeros({4}))); }, {"mse", "(2, 2)", "(4,)"});
}

BOOST_AUTO_TEST_CASE(dropout_zeroes_about_p_and_scales_the_rest)
{
    // With n = 10,000 independent draws the fraction of zeros has standard deviation
    // sqrt(p (1 − p) / n) = 0.0046 for p = 0.3; the 0.025 tolerance is 5.5 of them, so any seed
    // fails with probability below 1e-7 (this one is fixed, so the test is deterministic).
    const real p = 0.3;
    generator g(12345);
    tape t;
    var x = t.variable(g.uniform({10000}, 1, 2)); // nonzero, so zeros come from the mask only
    var y = dropout(x, p, g);
    std::size_t zeros_seen = 0;
    double worst = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
    {
        const real v = y.value()(i);
        if (v == 0)
            ++zeros_seen;
        else
            worst = std::max(worst, std::abs(double(v) - double(x.value()(i)) / (1 - p)));
    }
    BOOST_TEST(std::abs(double(zeros_seen) / 10000 - p) < 0.025);
    BOOST_TEST(worst < 1e-6); // kept elements are x / (1 − p), up to float rounding (x < 3)

    // The gradient is the same mask: 0 where dropped, 1 / (1 − p) where kept.
    t.backward(y, full({10000}, 1));
    for (std::size_t i = 0; i < y.size(); ++i)
    {
        if (y.value()(i) == 0)
            BOOST_REQUIRE(x.grad()(i) == 0);
        else
            BOOST_REQUIRE(std::abs(x.grad()(i) - 1 / (1 - p)) < 1e-6);
    }
}

BOOST_AUTO_TEST_CASE(dropout_masks_come_from_the_generator)
{
    tape t;
    var x = t.constant(full({200}, 1));
    generator a(7);
    generator b(7);
    const tensor first = dropout(x, 0.5, a).value();
    BOOST_TEST(max_abs_diff(first, dropout(x, 0.5, b).value()) == 0.0); // same seed, same mask
    BOOST_TEST(max_abs_diff(first, dropout(x, 0.5, a).value()) == 2.0); // next draw differs
    generator c(8);
    BOOST_TEST(max_abs_diff(first, dropout(x, 0.5, c).value()) == 2.0); // other seed differs
}

BOOST_AUTO_TEST_CASE(dropout_with_p_zero_is_identity)
{
    generator g(3);
    tape t;
    var x = t.variable(tensor{{1, -2}, {3, 0.5}});
    var y = dropout(x, 0, g);
    BOOST_TEST(max_abs_diff(y.value(), x.value()) == 0.0);
    t.backward(y, tensor{{1, 2}, {3, 4}});
    BOOST_TEST(max_abs_diff(x.grad(), tensor{{1, 2}, {3, 4}}) == 0.0);
    BOOST_TEST(g.next_double() == generator(3).next_double()); // p = 0 draws nothing
}

BOOST_AUTO_TEST_CASE(dropout_ignores_no_grad_and_checks_p)
{
    // Evaluation is the caller leaving dropout out, not a mode: it still drops under no_grad.
    generator g(5);
    tape t;
    var x = t.constant(full({100}, 1));
    {
        no_grad_guard no_grad;
        BOOST_TEST(xt::amin(dropout(x, 0.5, g).value())() == 0.0);
    }
    expect_error([&] { (void)dropout(x, 1, g); }, {"dropout", "p = 1", "[0, 1)", "(100,)"});
    expect_error([&] { (void)dropout(x, -0.1, g); }, {"dropout", "p = -0.1"});
}

BOOST_AUTO_TEST_SUITE_END()

// Numbers printed by scripts/fixtures/losses.py (PyTorch 1.13, float64) for the same inputs.
BOOST_AUTO_TEST_SUITE(loss_pytorch_parity)

const tensor x_fixture{{1.0, 2.0, 0.5, -1.0}, {0.0, -0.5, 3.0, 1.5}, {2.5, 2.5, -2.0, 0.25}};

BOOST_AUTO_TEST_CASE(log_softmax_matches_pytorch)
{
    tape t;
    const tensor y = log_softmax(t.constant(x_fixture)).value();
    const tensor expected{{-1.4951819, -0.495181898, -1.9951819, -3.4951819},
                          {-3.26475725, -3.76475725, -0.264757254, -1.76475725},
                          {-0.749767665, -0.749767665, -5.24976767, -2.99976767}};
    BOOST_TEST(max_abs_diff(y, expected) < 2e-6);

    var large_x = t.constant(tensor{{1000, -1000, 0}, {-1000, 1000, 999}});
    const tensor large = log_softmax(large_x).value();
    const tensor expected_large{{0, -2000, -1000}, {-2000.31326, -0.313261688, -1.31326169}};
    BOOST_TEST(max_abs_diff(large, expected_large) < 2e-4); // float spacing at 2000 is 1.2e-4
}

BOOST_AUTO_TEST_CASE(cross_entropy_matches_pytorch)
{
    tape t;
    var x = t.variable(x_fixture);
    var loss = cross_entropy(x, {3, 2, 0});
    BOOST_TEST(loss.item() == real(1.50323561), boost::test_tools::tolerance(real(1e-6)));
    t.backward(loss);
    const tensor grad{{0.0747359393, 0.203153346, 0.0453296386, -0.323218924},
                      {0.0127354028, 0.00772441225, -0.0775359305, 0.0570761155},
                      {-0.175841229, 0.157492104, 0.00174957924, 0.0165995457}};
    BOOST_TEST(max_abs_diff(x.grad(), grad) < 1e-6);

    var ignored = cross_entropy(x, {3, -100, 0});
    BOOST_TEST(ignored.item() == real(2.12247478), boost::test_tools::tolerance(real(1e-6)));
    t.backward(ignored);
    const tensor grad_ignored{{0.112103909, 0.304730019, 0.0679944579, -0.484828386},
                              {0, 0, 0, 0},
                              {-0.263761844, 0.236238156, 0.00262436886, 0.0248993185}};
    BOOST_TEST(max_abs_diff(x.grad(), grad_ignored) < 1e-6);

    BOOST_TEST(cross_entropy(x, {3, 2, 0}, -100, loss_reduction::sum).item() == real(4.50970682),
               boost::test_tools::tolerance(real(1e-6)));
    var large = t.constant(tensor{{1000, -1000, 0}, {-1000, 1000, 999}});
    BOOST_TEST(cross_entropy(large, {0, 2}).item() == real(0.656630844),
               boost::test_tools::tolerance(real(1e-5)));
}

BOOST_AUTO_TEST_CASE(sequence_cross_entropy_matches_pytorch_on_flattened_rows)
{
    // PyTorch: F.cross_entropy(seq.reshape(-1, 3), targets), with one target ignored.
    tape t;
    var seq = t.variable(
        tensor{{{0.1, -0.2, 0.3}, {1.0, 0.0, -1.0}}, {{2.0, 1.0, 0.5}, {-0.3, 0.8, 0.2}}});
    var loss = cross_entropy(seq, {2, 0, 1, -100});
    BOOST_TEST(loss.item() == real(0.919304689), boost::test_tools::tolerance(real(1e-6)));
    t.backward(loss);
    const tensor grad{
        {{0.112528179, 0.0833629255, -0.195891105}, {-0.111586348, 0.081576157, 0.0300101911}},
        {{0.209510573, -0.256258701, 0.0467481277}, {0, 0, 0}}};
    BOOST_TEST(max_abs_diff(seq.grad(), grad) < 1e-6);
}

BOOST_AUTO_TEST_SUITE_END()
