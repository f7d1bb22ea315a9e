// Forward values (and a few gradients at the kinks) of the elementwise ops against hand-computed
// numbers and PyTorch's; the gradient checks of these ops run in the sweep (gradcheck_sweep.cpp).
#include <cmath>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/framework/random.hpp>
#include <unfold/ops/add.hpp>
#include <unfold/ops/div.hpp>
#include <unfold/ops/elu.hpp>
#include <unfold/ops/exp.hpp>
#include <unfold/ops/hard_sigmoid.hpp>
#include <unfold/ops/log.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/neg.hpp>
#include <unfold/ops/pow.hpp>
#include <unfold/ops/relu.hpp>
#include <unfold/ops/scale_shift.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/softplus.hpp>
#include <unfold/ops/sqrt.hpp>
#include <unfold/ops/square.hpp>
#include <unfold/ops/sub.hpp>
#include <unfold/ops/sum.hpp>

// Unqualified calls resolve to the var overloads inside namespace unfold, where std::exp and
// ::exp are hidden ...
namespace unfold::elementwise_lookup
{
inline var inside(const var& x)
{
    return exp(x) + log(x) + sqrt(x) + square(x) + pow(x, 2) + div(x, x) + neg(x) + sub(x, x);
}
} // namespace unfold::elementwise_lookup

using namespace unfold;

// ... and next to them (plus the scalar overloads of <cmath>) in user code.
static var outside(const var& x)
{
    return exp(x) + log(x) + sqrt(x) + square(x) + pow(x, 2) + div(x, x) + neg(x) + sub(x, x);
}

namespace
{
/// d(Σ seed ⊙ f(x))/dx with seed = 1, for x given as a tensor.
template <class F>
tensor grad_of(const tensor& x0, F f)
{
    tape t;
    var x = t.variable(x0);
    var y = f(x);
    t.backward(y, tensor(y.shape(), real(1)));
    return x.grad();
}

} // namespace

using unfold::testing::all_finite;

BOOST_AUTO_TEST_SUITE(elementwise)

BOOST_AUTO_TEST_CASE(neg_sub_div_by_hand)
{
    tape t;
    var a = t.constant(tensor{{1, 2, 3}, {4, 5, 6}});
    var row = t.constant(tensor{1, 2, 4});
    tensor col0{2, -1};
    col0.reshape({2, 1}); // (2, 1): tensor{{2}, {-1}} is ambiguous in xtensor
    var col = t.constant(col0);
    BOOST_TEST(testing::max_abs_diff((-a).value(), tensor{{-1, -2, -3}, {-4, -5, -6}}) == 0.0);
    BOOST_TEST(testing::max_abs_diff((a - row).value(), tensor{{0, 0, -1}, {3, 3, 2}}) == 0.0);
    BOOST_TEST(testing::max_abs_diff((a - col).value(), tensor{{-1, 0, 1}, {5, 6, 7}}) == 0.0);
    BOOST_TEST(testing::max_abs_diff((row - a).value(), tensor{{0, 0, 1}, {-3, -3, -2}}) == 0.0);
    BOOST_TEST(testing::max_abs_diff((a / row).value(), tensor{{1, 1, 0.75}, {4, 2.5, 1.5}}) ==
               0.0);
    BOOST_TEST(testing::max_abs_diff((a / col).value(), tensor{{0.5, 1, 1.5}, {-4, -5, -6}}) ==
               0.0);
    const tensor y = (t.constant(zeros({2, 3, 4})) - t.constant(full({1, 4}, 1))).value();
    BOOST_TEST(y.shape() == (shape_type{2, 3, 4}));
    BOOST_TEST(y(1, 2, 3) == -1);
}

BOOST_AUTO_TEST_CASE(sub_div_gradients_by_hand)
{
    // d(a − b)/db and d(a / b)/db summed over the broadcast axis: b = (1, 2), a = ((1, 2), (3, 4))
    const tensor a0{{1, 2}, {3, 4}};
    tape t;
    var a = t.variable(a0);
    var b = t.variable(tensor{1, 2});
    t.backward(a / b, full({2, 2}, 1));
    BOOST_TEST(testing::max_abs_diff(a.grad(), tensor{{1, 0.5}, {1, 0.5}}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(b.grad(), tensor{-4, -1.5}) == 0.0); // −(1 + 3)/1, −(2 + 4)/4
    t.backward(a - b, full({2, 2}, 1));
    BOOST_TEST(testing::max_abs_diff(b.grad(), tensor{-2, -2}) == 0.0);
}

BOOST_AUTO_TEST_CASE(every_broadcast_matches_xtensors_and_its_gradients_reduce_like_numpy)
{
    // Note [Broadcast loops]: the walks against xtensor's general broadcasting and a sum over the
    // broadcast axes, for shapes that merge into one, two or three runs, both operands repeated,
    // a scalar-like (1,) and a lower rank on either side.
    const std::vector<std::pair<shape_type, shape_type>> pairs = {
        {{4, 5}, {4, 1}},       {{4, 1}, {4, 5}},   {{2, 3, 4}, {2, 1, 4}},
        {{3, 2, 1}, {3, 2, 5}}, {{3, 1}, {1, 4}},   {{2, 1, 3, 1}, {1, 4, 1, 5}},
        {{6}, {2, 3, 6}},       {{2, 3, 6}, {1}},   {{1, 3, 1}, {4, 1, 2}},
        {{5, 1, 1}, {5, 2, 3}}, {{2, 3, 4}, {3, 1}}};
    generator g(21);
    for (const auto& [sa, sb] : pairs)
    {
        const tensor a = g.uniform(sa, -1, 1), b = g.uniform(sb, 0.5, 2);
        tape t;
        const var va = t.variable(a), vb = t.variable(b);
        const std::vector<std::pair<var, tensor>> results = {{va + vb, tensor(a + b)},
                                                             {va - vb, tensor(a - b)},
                                                             {va * vb, tensor(a * b)},
                                                             {va / vb, tensor(a / b)}};
        for (const auto& [y, expected] : results)
            BOOST_TEST(xt::allclose(y.value(), expected, 1e-6, 1e-6),
                       shape_str(sa) << " with " << shape_str(sb));
        const tensor gy = g.uniform(results[0].second.shape(), -1, 1);
        var loss = sum(results[0].first * t.constant(gy));
        for (std::size_t k = 1; k < results.size(); ++k)
            loss = loss + sum(results[k].first * t.constant(gy));
        t.backward(loss);
        // d/da (a + b + a − b + a b + a / b) = 2 + b + 1 / b; d/db = a − a / b², each summed to its
        // own shape
        const tensor ga = unbroadcast(tensor(gy * (2 + b + 1 / b)), sa);
        const tensor gb = unbroadcast(tensor(gy * (a - a / (b * b))), sb);
        BOOST_TEST(xt::allclose(va.grad(), ga, 1e-5, 1e-5), shape_str(sa)
                                                                << " with " << shape_str(sb));
        BOOST_TEST(xt::allclose(vb.grad(), gb, 1e-5, 1e-5), shape_str(sa)
                                                                << " with " << shape_str(sb));
    }
}

BOOST_AUTO_TEST_CASE(shape_errors_name_the_op_and_both_shapes)
{
    tape t;
    var a = t.constant(zeros({3, 4}));
    var b = t.constant(zeros({5}));
    testing::expect_error([&] { (void)(a - b); }, {"sub:", "(3, 4)", "(5,)"});
    testing::expect_error([&] { (void)(a / b); }, {"div:", "(3, 4)", "(5,)"});
    testing::expect_error(
        [&] {
            (void)div(t.constant(zeros({2, 3})), a);
        },
        {"div:", "(2, 3)", "(3, 4)"});
}

BOOST_AUTO_TEST_CASE(scalar_operators)
{
    tape t;
    var x = t.variable(tensor{1, 2, 4});
    auto value = [](const var& v) { return v.value(); };
    BOOST_TEST(testing::max_abs_diff(value(1 - x), tensor{0, -1, -3}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(x - 1), tensor{0, 1, 3}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(x + 1), tensor{2, 3, 5}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(0.5 + x), tensor{1.5, 2.5, 4.5}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(x * 2), tensor{2, 4, 8}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(2.0 * x), tensor{2, 4, 8}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(0.5 * x), tensor{0.5, 1, 2}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(x / 4), tensor{0.25, 0.5, 1}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(1 / x), tensor{1, 0.5, 0.25}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(2.0 / x), tensor{2, 1, 0.5}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(value(scale_shift(x, 3, -1)), tensor{2, 5, 11}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(grad_of(x.value(), [](const var& v) { return 1 - v; }),
                                     tensor{-1, -1, -1}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(grad_of(x.value(), [](const var& v) { return 3 / v; }),
                                     tensor{-3, -0.75, -0.1875}) == 0.0);
}

BOOST_AUTO_TEST_CASE(pow_exp_log_sqrt_square_by_hand)
{
    tape t;
    var x = t.variable(tensor{0.25, 1, 4});
    BOOST_TEST(testing::max_abs_diff(pow(x, 2).value(), tensor{0.0625, 1, 16}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(pow(x, 0.5).value(), tensor{0.5, 1, 2}) < 1e-7);
    BOOST_TEST(testing::max_abs_diff(pow(x, -1).value(), tensor{4, 1, 0.25}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(sqrt(x).value(), tensor{0.5, 1, 2}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(square(x).value(), tensor{0.0625, 1, 16}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(log(x).value(), tensor{-1.3862944, 0, 1.3862944}) < 1e-6);
    BOOST_TEST(testing::max_abs_diff(exp(log(x)).value(), x.value()) < 1e-6);
    BOOST_TEST(testing::max_abs_diff(exp(t.constant(tensor{-1, 0, 1})).value(),
                                     tensor{0.36787944, 1, 2.7182818}) < 1e-6);
    // x^0 has gradient 0 everywhere, also at 0 (PyTorch), not 0 · 0^-1 = NaN
    BOOST_TEST(testing::max_abs_diff(grad_of(tensor{0, 2}, [](const var& v) { return pow(v, 0); }),
                                     tensor{0, 0}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(grad_of(tensor{-1, 2}, [](const var& v) { return pow(v, 3); }),
                                     tensor{3, 12}) == 0.0);
    // like PyTorch, log and sqrt of negative numbers are not errors
    BOOST_TEST(std::isinf(log(t.constant(tensor{0, 1})).value()(0)));
    BOOST_TEST(std::isnan(sqrt(t.constant(tensor{-1, 1})).value()(0)));
}

BOOST_AUTO_TEST_CASE(sigmoid_is_stable)
{
    tape t;
    var x = t.variable(tensor{-1000, -1, 0, 1, 1000});
    const tensor y = sigmoid(x).value();
    BOOST_TEST(all_finite(y));
    BOOST_TEST(testing::max_abs_diff(y, tensor{0, 0.26894142, 0.5, 0.73105858, 1}) < 1e-7);
    BOOST_TEST(y(0) == 0);
    BOOST_TEST(y(4) == 1);
    const tensor g = grad_of(x.value(), [](const var& v) { return sigmoid(v); });
    BOOST_TEST(all_finite(g));
    BOOST_TEST(testing::max_abs_diff(g, tensor{0, 0.19661193, 0.25, 0.19661193, 0}) < 1e-7);
}

BOOST_AUTO_TEST_CASE(hard_sigmoid_like_pytorch)
{
    const tensor x{-4, -3, 0, 1.5, 3, 4};
    tape t;
    BOOST_TEST(testing::max_abs_diff(hard_sigmoid(t.constant(x)).value(),
                                     tensor{0, 0, 0.5, 0.75, 1, 1}) == 0.0);
    const tensor g = grad_of(x, [](const var& v) { return hard_sigmoid(v); });
    BOOST_TEST(testing::max_abs_diff(g, tensor{0, 0, 1.0 / 6, 1.0 / 6, 0, 0}) < 1e-7);
}

BOOST_AUTO_TEST_CASE(relu_by_hand)
{
    const tensor x{-1, 0, 2};
    tape t;
    BOOST_TEST(testing::max_abs_diff(relu(t.constant(x)).value(), tensor{0, 0, 2}) == 0.0);
    BOOST_TEST(testing::max_abs_diff(grad_of(x, [](const var& v) { return relu(v); }),
                                     tensor{0, 0, 1}) == 0.0);
}

BOOST_AUTO_TEST_CASE(elu_like_pytorch)
{
    const tensor x{-1, 0, 2};
    tape t;
    BOOST_TEST(testing::max_abs_diff(elu(t.constant(x)).value(), tensor{-0.63212055, 0, 2}) < 1e-7);
    BOOST_TEST(testing::max_abs_diff(elu(t.constant(x), 0.5).value(), tensor{-0.31606028, 0, 2}) <
               1e-7);
    // α eˣ for x ≤ 0, 1 above
    BOOST_TEST(testing::max_abs_diff(grad_of(x, [](const var& v) { return elu(v, 0.5); }),
                                     tensor{0.18393972, 0.5, 1}) < 1e-7);
    BOOST_TEST(all_finite(elu(t.constant(tensor{-1000, 1000})).value()));
}

BOOST_AUTO_TEST_CASE(softplus_like_pytorch)
{
    const tensor x{30, -30, 0, 1};
    tape t;
    const tensor y = softplus(t.constant(x)).value();
    BOOST_TEST(y(0) == 30);                               // linear above threshold
    BOOST_TEST(std::abs(y(1) / 9.357623e-14 - 1) < 1e-5); // log1p(e⁻³⁰), not 0
    BOOST_TEST(std::abs(y(2) - 0.69314718) < 1e-7);       // ln 2
    BOOST_TEST(std::abs(y(3) - 1.3132617) < 1e-6);        // ln(1 + e)
    const tensor g = grad_of(x, [](const var& v) { return softplus(v); });
    BOOST_TEST(g(0) == 1);
    BOOST_TEST(std::abs(g(1) / 9.357623e-14 - 1) < 1e-5); // σ(−30)
    BOOST_TEST(std::abs(g(2) - 0.5) < 1e-7);
    BOOST_TEST(all_finite(softplus(t.constant(tensor{-1000, 1000})).value()));
    // beta 2, threshold 1: 2x = 0.8 is below the threshold, 2x = 1.2 above
    BOOST_TEST(testing::max_abs_diff(softplus(t.constant(tensor{0.4, 0.6}), 2, 1).value(),
                                     tensor{0.58555033, 0.6}) < 1e-7);
}

BOOST_AUTO_TEST_CASE(unqualified_calls_find_the_var_overloads)
{
    tape t;
    var x = t.variable(tensor{1, 4});
    // e^x + ln x + √x + x² + x² + 1 − x + 0: at 1: e + 0 + 1 + 1 + 1 + 1 − 1; at 4: e⁴ + ln 4 + 2 +
    // 16 + 16 + 1 − 4
    const tensor expected{2.7182818 + 3, 54.59815 + 1.3862944 + 31};
    BOOST_TEST(testing::max_abs_diff(elementwise_lookup::inside(x).value(), expected) < 1e-4);
    BOOST_TEST(testing::max_abs_diff(outside(x).value(), expected) < 1e-4);
    BOOST_TEST(std::abs(exp(1.0) - 2.718281828) < 1e-9); // <cmath>'s exp is still reachable
}

BOOST_AUTO_TEST_SUITE_END()
