// Initialisers: bounds, variances over big matrices, orthogonality, the LSTM forget-gate bias.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include "test_util.hpp"
#include <unfold/framework/init.hpp>
#include <unfold/models/lstm.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

namespace
{
double mean_of(const tensor& t)
{
    double s = 0;
    for (real v : t)
        s += v;
    return s / double(t.size());
}
double variance_of(const tensor& t)
{
    const double m = mean_of(t);
    double s = 0;
    for (real v : t)
        s += (v - m) * (v - m);
    return s / double(t.size());
}
// max |AᵀA − c·I| in double, A (rows, cols) taken from `t` starting at row `row0`.
double gram_error(const tensor& t, std::size_t row0, std::size_t rows, std::size_t cols,
                  double c = 1)
{
    double worst = 0;
    for (std::size_t i = 0; i < cols; ++i)
        for (std::size_t j = 0; j < cols; ++j)
        {
            double dot = 0;
            for (std::size_t r = row0; r < row0 + rows; ++r)
                dot += double(t(r, i)) * double(t(r, j));
            worst = std::max(worst, std::abs(dot - (i == j ? c : 0.0)));
        }
    return worst;
}
// max |AAᵀ − I| for a wide (rows < cols) matrix.
double row_gram_error(const tensor& t)
{
    const std::size_t rows = t.shape()[0], cols = t.shape()[1];
    double worst = 0;
    for (std::size_t i = 0; i < rows; ++i)
        for (std::size_t j = 0; j < rows; ++j)
        {
            double dot = 0;
            for (std::size_t c = 0; c < cols; ++c)
                dot += double(t(i, c)) * double(t(j, c));
            worst = std::max(worst, std::abs(dot - (i == j ? 1.0 : 0.0)));
        }
    return worst;
}
} // namespace

BOOST_AUTO_TEST_SUITE(initialisers)

BOOST_AUTO_TEST_CASE(inverse_sqrt_uniform_stays_within_one_over_root_h)
{
    const std::size_t h = 64;
    param w("w_hh", zeros({4 * h, h}));
    generator gen(7);
    init::inverse_sqrt_uniform(w, h, gen);
    const double k = 1 / std::sqrt(double(h)); // 0.125
    BOOST_TEST(xt::amax(w.value())() < real(k));
    BOOST_TEST(xt::amin(w.value())() >= real(-k));
    BOOST_TEST(xt::amax(w.value())() > real(0.99 * k)); // the whole range is used
    BOOST_TEST(xt::amin(w.value())() < real(-0.99 * k));
    // U(−k, k) has variance k²/3; 16384 draws: relative error of the estimate ≈ 0.7%.
    BOOST_TEST(variance_of(w.value()) == k * k / 3, boost::test_tools::tolerance(0.04));
    BOOST_TEST(std::abs(mean_of(w.value())) < 0.005);
}

BOOST_AUTO_TEST_CASE(the_same_seed_gives_the_same_values)
{
    param a("a", zeros({5, 3})), b("b", zeros({5, 3}));
    generator g1(42), g2(42);
    init::xavier_uniform(a, g1);
    init::xavier_uniform(b, g2);
    BOOST_TEST(max_abs_diff(a.value(), b.value()) == 0.0);
    init::xavier_uniform(b, g2); // the stream moved on
    BOOST_TEST(max_abs_diff(a.value(), b.value()) > 0.0);
}

BOOST_AUTO_TEST_CASE(xavier_uniform_bound_and_variance)
{
    // (out, in) = (300, 200): a = √(6 / 500), variance 2 / 500 = 0.004.
    param w("w", zeros({300, 200}));
    generator gen(1);
    init::xavier_uniform(w, gen);
    const double a = std::sqrt(6.0 / 500);
    BOOST_TEST(xt::amax(xt::abs(w.value()))() <= real(a));
    BOOST_TEST(xt::amax(xt::abs(w.value()))() > real(0.999 * a));
    // 60000 draws: relative standard error of the variance ≈ 0.37%.
    BOOST_TEST(variance_of(w.value()) == 0.004, boost::test_tools::tolerance(0.03));
    // gain 2 quadruples the variance.
    init::xavier_uniform(w, gen, 2.0);
    BOOST_TEST(variance_of(w.value()) == 0.016, boost::test_tools::tolerance(0.03));
}

BOOST_AUTO_TEST_CASE(xavier_normal_variance_and_fans_of_a_3d_weight)
{
    param w("w", zeros({300, 200}));
    generator gen(2);
    init::xavier_normal(w, gen);
    // 60000 draws: relative standard error of the variance ≈ 0.58%.
    BOOST_TEST(variance_of(w.value()) == 0.004, boost::test_tools::tolerance(0.04));
    BOOST_TEST(std::abs(mean_of(w.value())) < 0.002);
    // (out, in, k) = (40, 30, 5): fan_in 150, fan_out 200, bound √(6 / 350).
    param c("conv", zeros({40, 30, 5}));
    init::xavier_uniform(c, gen);
    BOOST_TEST(xt::amax(xt::abs(c.value()))() <= real(std::sqrt(6.0 / 350)));
    BOOST_TEST(xt::amax(xt::abs(c.value()))() > real(0.99 * std::sqrt(6.0 / 350)));
    param b("b", zeros({8}));
    expect_error([&] { init::xavier_normal(b, gen); }, {"xavier_normal", "'b'", "fewer than 2"});
}

BOOST_AUTO_TEST_CASE(orthogonal_square_tall_and_wide)
{
    generator gen(3);
    param square("square", zeros({64, 64}));
    init::orthogonal(square, gen);
    BOOST_TEST(gram_error(square.value(), 0, 64, 64) < 1e-5);
    BOOST_TEST(row_gram_error(square.value()) < 1e-5);
    param tall("tall", zeros({48, 16}));
    init::orthogonal(tall, gen);
    BOOST_TEST(gram_error(tall.value(), 0, 48, 16) < 1e-5);
    param wide("wide", zeros({16, 48}));
    init::orthogonal(wide, gen);
    BOOST_TEST(row_gram_error(wide.value()) < 1e-5);
    param scaled("scaled", zeros({8, 8}));
    init::orthogonal(scaled, gen, 2.0);
    BOOST_TEST(gram_error(scaled.value(), 0, 8, 8, 4.0) < 1e-5);
}

BOOST_AUTO_TEST_CASE(orthogonal_is_the_sign_fixed_qr_of_the_drawn_gaussian)
{
    // Redraw the same Gaussian A (5×3): R = QᵀA must be upper triangular with a positive diagonal.
    generator gen(11), replay(11);
    param q("q", zeros({5, 3}));
    init::orthogonal(q, gen);
    const tensor a = replay.normal({5, 3});
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j)
        {
            double r = 0;
            for (std::size_t k = 0; k < 5; ++k)
                r += double(q.value()(k, i)) * double(a(k, j));
            if (i > j)
                BOOST_TEST(std::abs(r) < 1e-5);
            if (i == j)
                BOOST_TEST(r > 0.01);
        }
}

BOOST_AUTO_TEST_CASE(orthogonal_per_gate_block)
{
    // An LSTM's stacked (4H, H) recurrent matrix: each H×H gate block is orthogonal on its own,
    // so the whole matrix has QᵀQ = 4I.
    const std::size_t h = 24;
    param w("w_hh", zeros({4 * h, h}));
    generator gen(5);
    init::orthogonal(w, gen, 1.0, 4);
    for (std::size_t g = 0; g < 4; ++g)
        BOOST_TEST(gram_error(w.value(), g * h, h, h) < 1e-5, "gate block " << g);
    BOOST_TEST(gram_error(w.value(), 0, 4 * h, h, 4.0) < 1e-5);
    BOOST_TEST(std::abs(w.value()(0, 0) - w.value()(h, 0)) > 0); // blocks drawn independently
    expect_error([&] { init::orthogonal(w, gen, 1.0, 5); },
                 {"orthogonal", "'w_hh'", "5 row blocks"});
}

BOOST_AUTO_TEST_CASE(constant_fills)
{
    param b("b", zeros({2, 3}));
    init::constant(b, 0.25);
    BOOST_TEST(xt::amin(b.value())() == 0.25f);
    BOOST_TEST(xt::amax(b.value())() == 0.25f);
}

BOOST_AUTO_TEST_CASE(forget_bias_sets_the_f_block_only)
{
    // H = 3, gate order (i, f, g, o): elements 3, 4, 5 become 1, the others keep their values.
    const tensor before{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1, 1.2, 1.3};
    param b("b_ih", before);
    lstm_forget_bias(b);
    for (std::size_t j = 0; j < 12; ++j)
        BOOST_TEST(b.value()(j) == (j >= 3 && j < 6 ? real(1) : before(j)), "element " << j);
    lstm_forget_bias(b, 0.0);
    BOOST_TEST(b.value()(4) == 0.0f);
    BOOST_TEST(b.value()(6) == before(6));
    param odd("odd", zeros({6}));
    expect_error([&] { lstm_forget_bias(odd); }, {"lstm_forget_bias", "'odd'", "(6,)"});
    param matrix("m", zeros({4, 4}));
    expect_error([&] { lstm_forget_bias(matrix); }, {"lstm_forget_bias", "(4, 4)"});
}

BOOST_AUTO_TEST_SUITE_END()
