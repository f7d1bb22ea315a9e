// The tape itself: accumulation, repeatability, deep graphs, stale handles, parameter sharing.
#include <boost/test/unit_test.hpp>

#include <functional>
#include <thread>
#include <vector>

#include "test_util.hpp"
#include <unfold/ops/add.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>
#include <unfold/ops/tanh.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

BOOST_AUTO_TEST_SUITE(engine)

BOOST_AUTO_TEST_CASE(reuse_of_a_non_leaf)
{
    // y = u*u + u with u = 3x: dy/dx = (2u + 1) * 3. u feeds two nodes (three uses).
    tape t;
    var x = t.variable(tensor{1.0, -2.0});
    var three = t.constant(tensor{3.0, 3.0});
    var u = x * three;
    u.retain_grad();
    var y = u * u + u;
    t.backward(y, tensor{1.0, 1.0});
    BOOST_TEST(x.grad()(0) == (2 * 3.0 + 1) * 3);
    BOOST_TEST(x.grad()(1) == (2 * -6.0 + 1) * 3);
    BOOST_TEST(u.grad()(0) == 7.0);
}

BOOST_AUTO_TEST_CASE(backward_twice_recomputes_intermediates_and_accumulates_params)
{
    param w("w", tensor{{0.5, -1.0}, {2.0, 0.25}});
    tape t;
    var x = t.constant(tensor{{1.0, 2.0}});
    var h = tanh(matmul(x, t[w]));
    h.retain_grad();
    const tensor seed{{1.0, -1.0}};
    t.backward(h, seed);
    const tensor h_grad_first = h.grad();
    const tensor w_grad_first = w.grad();
    t.backward(h, seed);
    BOOST_TEST(max_abs_diff(h.grad(), h_grad_first) == 0.0);
    BOOST_TEST(max_abs_diff(w.grad(), 2 * w_grad_first) == 0.0);
    w.zero_grad();
    BOOST_TEST(xt::amax(xt::abs(w.grad()))() == 0.0);
}

BOOST_AUTO_TEST_CASE(bytes_held_counts_values_then_kept_gradients_and_reused_buffers)
{
    tape t;
    var x = t.variable(zeros({2, 3}));
    var y = tanh(x * x); // three nodes of 6 elements
    BOOST_TEST(t.bytes_held() == 3 * 6 * sizeof(real));
    t.backward(y, full({2, 3}, 1));
    // Two gradient buffers in all: y's, released to the pool once tanh has passed it on, became
    // x's slot; the product's was released after it. x keeps its gradient, the pool one buffer.
    BOOST_TEST(t.bytes_held() == (3 + 1 + 1) * 6 * sizeof(real));
    t.clear(); // the values go; both gradient buffers stay in the pool
    BOOST_TEST(t.bytes_held() == 2 * 6 * sizeof(real));
}

BOOST_AUTO_TEST_CASE(a_200000_node_chain_backpropagates_without_recursion)
{
    tape t;
    var x = t.variable(tensor{0.5});
    var zero = t.constant(tensor{0.0});
    var y = x;
    for (int i = 0; i < 200000; ++i)
        y = y + zero;
    BOOST_TEST(t.size() == 200002u);
    t.backward(y, tensor{1.0});
    BOOST_TEST(x.grad()(0) == 1.0);
}

BOOST_AUTO_TEST_CASE(a_handle_from_a_cleared_tape_throws)
{
    tape t;
    var x = t.variable(tensor{1.0});
    t.clear();
    expect_error([&] { (void)x.value(); }, {"cleared tape"});
    var again = t.variable(tensor{2.0}); // the tape itself is reusable
    BOOST_TEST(again.value()(0) == 2.0);
    expect_error([&] { (void)(x * again); }, {"cleared tape"});
}

BOOST_AUTO_TEST_CASE(a_handle_from_a_destroyed_tape_throws)
{
    var x;
    {
        tape t;
        x = t.variable(tensor{1.0});
    }
    expect_error([&] { (void)x.value(); }, {"destroyed"});
    expect_error([&] { (void)var().value(); }, {"empty var"});
}

BOOST_AUTO_TEST_CASE(inputs_from_two_tapes_are_rejected)
{
    tape a, b;
    var x = a.variable(tensor{1.0});
    var y = b.variable(tensor{1.0});
    expect_error([&] { (void)(x + y); }, {"add", "different tapes"});
}

BOOST_AUTO_TEST_CASE(backward_from_a_non_scalar_needs_a_seed)
{
    tape t;
    var x = t.variable(tensor{{1.0, 2.0}});
    var y = tanh(x);
    expect_error([&] { t.backward(y); }, {"backward", "(1, 2)", "seed"});
    expect_error([&] { t.backward(y, tensor{1.0, 2.0, 3.0}); }, {"seed", "(3,)", "(1, 2)"});
}

BOOST_AUTO_TEST_CASE(a_parameter_of_the_wrong_shape_is_reported)
{
    param w("w_ih", zeros({3, 4}));
    expect_error([&] { w.assign(zeros({4, 3})); }, {"w_ih", "(4, 3)", "(3, 4)"});
    w.value() = zeros({2, 2}); // bypasses assign(): caught when bound
    tape t;
    expect_error([&] { (void)t[w]; }, {"w_ih", "(2, 2)", "(3, 4)"});
}

BOOST_AUTO_TEST_CASE(shape_errors_name_the_op_and_both_shapes)
{
    tape t;
    var a = t.variable(zeros({2, 3}));
    var b = t.variable(zeros({4, 5}));
    expect_error([&] { (void)matmul(a, b); }, {"matmul", "(2, 3)", "(4, 5)"});
    expect_error([&] { (void)(a + b); }, {"add", "(2, 3)", "(4, 5)"});
    expect_error([&] { (void)(a * b); }, {"mul", "(2, 3)", "(4, 5)"});
}

BOOST_AUTO_TEST_CASE(one_leaf_per_parameter_per_tape)
{
    param w("w", full({1, 1}, 2.0));
    tape t;
    var first = t[w];
    var second = t[w];
    BOOST_TEST(first.index() == second.index());
    BOOST_TEST(t.size() == 1u);
    tape other;
    BOOST_TEST(other[w].index() == 0u);
}

BOOST_AUTO_TEST_CASE(no_grad_records_values_without_gradients)
{
    param w("w", full({1, 1}, 2.0));
    tape t;
    var x = t.variable(full({1, 1}, 3.0));
    {
        no_grad_guard guard;
        var y = matmul(x, t[w]);
        BOOST_TEST(y.value()(0, 0) == 6.0);
        BOOST_TEST(!y.requires_grad());
    }
    BOOST_TEST(grad_enabled());
    var z = matmul(x, t[w]);
    BOOST_TEST(z.requires_grad());
}

BOOST_AUTO_TEST_CASE(detach_stops_gradients)
{
    tape t;
    var x = t.variable(tensor{2.0});
    var y = x * x;
    var d = detach(y);
    var z = d * x + y;
    t.backward(z, tensor{1.0});
    // z = d·x + x², d constant = 4: dz/dx = d + 2x = 8
    BOOST_TEST(x.grad()(0) == 8.0);
    BOOST_TEST(!d.requires_grad());
}

// The parameter-sharing fact behind BPTT: a weight used at 50 steps receives exactly the sum of
// its 50 per-step contributions. The contributions are measured by giving each step its own copy
// of the weight (untied), on an otherwise identical graph.
BOOST_AUTO_TEST_CASE(a_parameter_used_at_50_steps_gets_the_sum_of_its_per_step_contributions)
{
    const std::size_t steps = 50, hidden = 3;
    xt::random::seed(7);
    const tensor w_value = xt::random::randn<real>(shape_type{hidden, hidden}, 0, 0.5);
    const tensor x_value = xt::random::randn<real>(shape_type{steps, 1, hidden});
    const tensor seed = xt::random::randn<real>(shape_type{1, hidden});
    auto step_input = [&](tape& t, std::size_t s) {
        return t.constant(xt::eval(xt::view(x_value, s)));
    };

    param w("w", w_value);
    tape tied;
    var h = tied.constant(zeros({1, hidden}));
    for (std::size_t s = 0; s < steps; ++s)
        h = tanh(matmul(h, tied[w]) + step_input(tied, s));
    tied.backward(h, seed);

    tape untied;
    std::vector<var> copies;
    var g = untied.constant(zeros({1, hidden}));
    for (std::size_t s = 0; s < steps; ++s)
    {
        copies.push_back(untied.variable(w_value));
        g = tanh(matmul(g, copies.back()) + step_input(untied, s));
    }
    untied.backward(g, seed);

    tensor sum = zeros({hidden, hidden});
    for (std::size_t s = steps; s-- > 0;)
        sum += copies[s].grad();
    BOOST_TEST(xt::amax(xt::abs(copies[steps - 1].grad()))() > 0.0);
    BOOST_TEST(xt::amax(xt::abs(copies[1].grad()))() > 0.0); // step 0 sees h = 0
    BOOST_TEST(max_abs_diff(w.grad(), sum) <= 1e-6 * (1 + xt::amax(xt::abs(sum))()));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(engine_threads)

BOOST_AUTO_TEST_CASE(tapes_cleared_on_two_threads_keep_every_earlier_handle_stale)
{
    // Each thread clears its own tape over and over and keeps a handle from every generation: if
    // two threads could draw the same generation (an unguarded counter), a cleared tape could
    // take a number one of its own earlier generations had, and that generation's handles would
    // read live nodes again.
    constexpr int rounds = 20000;
    auto work = [](int& stale_ok) {
        tape t;
        std::vector<var> earlier;
        for (int r = 0; r < rounds; ++r)
        {
            earlier.push_back(t.constant(tensor{real(r)}));
            t.clear();
        }
        stale_ok = 0;
        for (const var& v : earlier)
        {
            try
            {
                (void)v.value();
            }
            catch (const error&)
            {
                ++stale_ok;
            }
        }
    };
    int a = 0, b = 0;
    std::thread first(work, std::ref(a));
    std::thread second(work, std::ref(b));
    first.join();
    second.join();
    BOOST_TEST(a == rounds);
    BOOST_TEST(b == rounds);
}

BOOST_AUTO_TEST_SUITE_END()
