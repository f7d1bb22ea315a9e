// Anomaly mode (Note [Anomaly mode]): the first non-finite value in forward or backward throws,
// naming the op, its inputs' shapes, and inside a recurrent layer the step, layer and gate.
#include <cmath>
#include <limits>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/framework/anomaly.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/ops/exp.hpp>
#include <unfold/ops/log.hpp>
#include <unfold/ops/neg.hpp>
#include <unfold/ops/pow.hpp>
#include <unfold/ops/sqrt.hpp>
#include <unfold/ops/sum.hpp>

using namespace unfold;
using unfold::testing::expect_error;

namespace
{
/// What the message of an expected unfold::error is ("" when nothing was thrown).
template <class F>
std::string message_of(F&& f)
{
    try
    {
        f();
    }
    catch (const unfold::error& e)
    {
        return e.what();
    }
    return "";
}

/// A 2-layer LSTM (I = H = 1, B = 2) with a naive gate activation 1 / (1 + e^−x) whose exp
/// overflows for x < −88.7 (float). Layer 0 passes tanh(tanh(x_t)) up; layer 1's forget gate
/// pre-activation is −300·h0_t. So x_t = 3 for batch element 1 at step `bad` (and 0 elsewhere)
/// makes e^{−x} = inf in layer 1's forget gate at that step only; the output stays finite
/// (1 / (1 + inf) = 0) but backward gives 0 · inf = NaN in exp's backward.
struct overflowing_lstm
{
    static constexpr std::size_t T = 40;
    param_store store;
    generator g{7};
    layer<lstm_cell> lstm;
    tensor x = zeros({T, 2, 1});

    explicit overflowing_lstm(std::size_t bad)
        : lstm(make(store, g))
    {
        for (param p : lstm.params())
            p.value().fill(0);
        store.get("weight_ih_l0").value()(2, 0) = 1; // g = tanh(x)
        tensor& b = store.get("bias_ih_l0").value(); // i, f, g, o
        b(0) = 20;                                   // i ≈ 1
        b(1) = -20;                                  // f ≈ 0
        b(3) = 20;                                   // o ≈ 1
        store.get("weight_ih_l1").value()(1, 0) = -300;
        x(bad, 1, 0) = 3;
    }
    static layer<lstm_cell> make(param_store& store, generator& g)
    {
        lstm_options o;
        o.gate = [](const var& v) { return real(1) / (1 + exp(-v)); };
        layer_options lo;
        lo.num_layers = 2;
        return lstm_layer(store, 1, 1, g, lo, o);
    }
    /// Forward and a sum loss; returns the loss.
    var loss(tape& t) const { return sum(lstm(t, t.constant(x)).output); }
};
} // namespace

BOOST_AUTO_TEST_SUITE(anomaly)

BOOST_AUTO_TEST_CASE(off_by_default_and_guard_restores)
{
    BOOST_TEST(!anomaly_mode());
    {
        anomaly_guard on;
        BOOST_TEST(anomaly_mode());
        {
            anomaly_guard off(false);
            BOOST_TEST(!anomaly_mode());
        }
        BOOST_TEST(anomaly_mode());
    }
    BOOST_TEST(!anomaly_mode());
}

BOOST_AUTO_TEST_CASE(forward_nan_names_the_op_and_input_shapes)
{
    tape t;
    const var x = t.variable(tensor({{1, -1, 2}}));
    BOOST_TEST(std::isnan(log(x).value()(0, 1))); // off: silently NaN
    anomaly_guard on;
    const std::string m = message_of([&] { (void)log(x); });
    BOOST_TEST(m == "NaN in forward of log: the output (1, 3) is not finite (first at (0, 1)); "
                    "inputs: (1, 3)");
}

BOOST_AUTO_TEST_CASE(backward_inf_names_the_op)
{
    tape t;
    const var x = t.variable(tensor({4, 0, 1}));
    const var y = sum(sqrt(x)); // finite forward, d√x/dx = inf at 0
    anomaly_guard on;
    const std::string m = message_of([&] { t.backward(y); });
    BOOST_TEST(m == "inf in backward of sqrt: the gradient of input 0 (3,) is not finite (first "
                    "at (1)); inputs: (3,)");
}

BOOST_AUTO_TEST_CASE(non_finite_seed_is_reported)
{
    tape t;
    const var x = t.variable(tensor({1, 2}));
    const var y = exp(x);
    anomaly_guard on;
    expect_error(
        [&] {
            t.backward(y, tensor({1, std::numeric_limits<real>::quiet_NaN()}));
        },
        {"backward: the seed of output 0 is not finite"});
}

BOOST_AUTO_TEST_CASE(lstm_forward_overflow_names_step_layer_and_gate)
{
    overflowing_lstm m(37);
    {
        tape t; // off: no throw, the output is finite
        BOOST_TEST(std::isfinite(m.loss(t).item()));
    }
    anomaly_guard on;
    tape t;
    const std::string message = message_of([&] { (void)m.loss(t); });
    BOOST_TEST(message == "inf in forward of exp at step 37, layer 1, forget gate: the output "
                          "(2, 1) is not finite (first at (1, 0)); inputs: (2, 1)");
}

BOOST_AUTO_TEST_CASE(lstm_backward_nan_names_step_layer_and_gate)
{
    overflowing_lstm m(12);
    tape t;
    const var loss = m.loss(t); // recorded with anomaly mode off: sites are kept anyway
    {
        anomaly_guard on;
        const std::string message = message_of([&] { t.backward(loss); });
        BOOST_TEST(message == "NaN in backward of exp at step 12, layer 1, forget gate: the "
                              "gradient of input 0 (2, 1) is not finite (first at (1, 0)); "
                              "inputs: (2, 1)");
    }
    // Off, the same backward runs to the end and silently poisons the gradient.
    m.store.zero_grad();
    BOOST_CHECK_NO_THROW(t.backward(loss));
    BOOST_TEST(std::isnan(m.store.get("weight_ih_l1").grad()(1, 0)));
}

BOOST_AUTO_TEST_CASE(nan_parameter_is_named_with_its_first_use)
{
    overflowing_lstm m(0);
    m.x.fill(0);
    m.store.get("bias_hh_l1").value()(1) = std::numeric_limits<real>::quiet_NaN();
    anomaly_guard on;
    tape t;
    const std::string message = message_of([&] { (void)m.loss(t); });
    // b_hh is folded with b_ih into the input projection of all four gates, before any step, so
    // neither a step nor a gate is named.
    BOOST_TEST(message == "NaN in forward of add at layer 1: the output (4,) is not finite (first "
                          "at (1)); inputs: parameter 'bias_ih_l1' (4,), parameter 'bias_hh_l1' "
                          "(4,) [not finite]");
}

BOOST_AUTO_TEST_CASE(reverse_direction_starts_at_the_last_step)
{
    param_store store;
    generator g(3);
    layer_options lo;
    lo.bidirectional = true;
    const auto gru = gru_layer(store, 2, 3, g, lo);
    store.get("weight_hh_l0_reverse").value()(4, 1) = std::numeric_limits<real>::quiet_NaN();
    tape t;
    const var x = t.constant(g.uniform({6, 2, 2}, -1, 1));
    anomaly_guard on;
    expect_error([&] { (void)gru(t, x); },
                 {"NaN in forward of addmm at step 5, layer 0 (reverse): the output (2, 9)",
                  "(2, 3), parameter 'weight_hh_l0_reverse' (9, 3) [not finite]"});
}

BOOST_AUTO_TEST_CASE(labels_nest_and_are_restored_after_a_throw)
{
    tape t;
    const var x = t.variable(tensor({-1}));
    anomaly_guard on;
    const step_scope at(4);
    const std::string m = message_of([&] {
        (void)label("outer", [&] {
            const var y = label("inner", [&] { return exp(x); });
            return log(-y);
        });
    });
    BOOST_TEST(m.find("NaN in forward of log at step 4, outer:") == 0, m);
    BOOST_TEST(gate_of(current_site()) == nullptr);
    BOOST_TEST(step_of(current_site()) == 4);
}

// Under a memory policy the recomputed steps are the recorded ones: the NaN in backward names
// the same op, step, layer and gate.
BOOST_AUTO_TEST_CASE(under_a_memory_policy_a_backward_nan_names_the_same_step_and_gate)
{
    for (const char* policy : {"every:5", "gemm"})
    {
        overflowing_lstm m(12);
        m.lstm.set_bptt_memory(bptt_memory::parse(policy));
        tape t;
        const var loss = m.loss(t);
        anomaly_guard on;
        BOOST_TEST(message_of([&] { t.backward(loss); }) ==
                       "NaN in backward of exp at step 12, layer 1, forget gate: the gradient of "
                       "input 0 (2, 1) is not finite (first at (1, 0)); inputs: (2, 1)",
                   policy);
    }
}

BOOST_AUTO_TEST_SUITE_END()
