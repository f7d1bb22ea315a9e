// The gradient-flow probe (models/probe.hpp) and the engine features it stands on: released
// intermediate gradients, retain_grad, gradient hooks and per-op parameter contributions.
#include <boost/test/unit_test.hpp>

#include "tests/test_util.hpp"
#include <unfold/models/bptt_memory.hpp>
#include <unfold/models/linear.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/probe.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/tanh.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

static_assert(std::is_same_v<real, double>, "exact comparisons run in the double build");

namespace
{
constexpr std::size_t T = 6, B = 2, I = 3, H = 4;

std::vector<var> constants(tape& t, const tensor& x)
{
    std::vector<var> xs;
    for (std::size_t k = 0; k < x.shape()[0]; ++k)
        xs.push_back(t.constant(xt::eval(xt::view(x, k))));
    return xs;
}

/// L = Σ_k Σ (h_k · r) with a fixed random read-out r, so every step's state gets a gradient.
template <class S>
var readout_loss(tape& t, const std::vector<S>& states, const tensor& r)
{
    var loss;
    const var readout = t.constant(r);
    for (const S& s : states)
    {
        const var term = sum(matmul(hidden(s), readout));
        loss = loss.defined() ? loss + term : term;
    }
    return loss;
}
} // namespace

BOOST_AUTO_TEST_SUITE(probe)

BOOST_AUTO_TEST_CASE(intermediate_gradients_are_released_unless_retained)
{
    param w("w", tensor{{0.5, -1.0}, {2.0, 0.25}});
    tape t;
    const var x = t.variable(tensor{{1.0, 2.0}});
    const var u = matmul(x, t[w]);
    const var kept = tanh(u);
    kept.retain_grad();
    t.backward(sum(kept * kept));
    // The released one names its op and the way out; leaves and retained values keep theirs.
    expect_error([&] { (void)u.grad(); }, {"output of matmul", "retain_grad()"});
    const tensor y = xt::tanh(tensor{{1.0 * 0.5 + 2.0 * 2.0, -1.0 + 2.0 * 0.25}});
    BOOST_TEST(max_abs_diff(kept.grad(), tensor(2 * y)) < 1e-15);
    const tensor du = 2 * y * (1 - y * y);
    BOOST_TEST(max_abs_diff(w.grad(), tensor{{du(0, 0), du(0, 1)}, {2 * du(0, 0), 2 * du(0, 1)}}) <
               1e-15);
    // A second backward reuses the released buffers and gives the same gradients.
    const tensor first = x.grad();
    t.backward(sum(kept * kept));
    BOOST_TEST(max_abs_diff(x.grad(), first) == 0.0);
    BOOST_TEST(max_abs_diff(w.grad(), tensor(2 * tensor{{du(0, 0), du(0, 1)},
                                                        {2 * du(0, 0), 2 * du(0, 1)}})) < 1e-15);
}

BOOST_AUTO_TEST_CASE(a_hook_sees_the_complete_gradient_of_a_value_used_twice)
{
    tape t;
    const var x = t.variable(tensor{1.5, -0.5});
    const var u = x * x;
    std::vector<tensor> seen;
    u.register_hook([&](const tensor& g) { seen.push_back(g); });
    u.retain_grad();
    t.backward(sum(u * u + u)); // dL/du = 2u + 1, from two consumers
    BOOST_TEST_REQUIRE(seen.size() == 1u);
    BOOST_TEST(max_abs_diff(seen[0], tensor{2 * 2.25 + 1, 2 * 0.25 + 1}) == 0.0);
    BOOST_TEST(max_abs_diff(seen[0], u.grad()) == 0.0);
    t.backward(sum(u));
    BOOST_TEST(seen.size() == 2u); // hooks stay registered, as in PyTorch
    BOOST_TEST(max_abs_diff(seen[1], tensor{1.0, 1.0}) == 0.0);
}

BOOST_AUTO_TEST_CASE(shares_sum_to_the_gradient_and_equal_untied_copies)
{
    generator g(5);
    param_store store;
    const rnn_cell cell = rnn_cell::create(store, I, H, g);
    const tensor x = g.normal({T, B, I});
    const tensor r = g.normal({H, 1});

    // Without a probe (the layer's one-GEMM projection path).
    tensor plain_ih, plain_hh;
    {
        tape t;
        const auto states = unroll(cell, t, constants(t, x), t.constant(zeros({B, H})));
        t.backward(readout_loss(t, states, r));
        plain_ih = cell.weight_ih.grad();
        plain_hh = cell.weight_hh.grad();
        store.zero_grad();
    }

    tape t;
    gradient_probe probe(t);
    const auto states = unroll(cell, t, constants(t, x), t.constant(zeros({B, H})));
    probe.watch(states);
    for (const var& h : states)
        h.retain_grad();
    t.backward(readout_loss(t, states, r));

    // The probe changes no gradient, and the shares add up to it.
    BOOST_TEST(max_abs_diff(cell.weight_ih.grad(), plain_ih) < 1e-14);
    BOOST_TEST(max_abs_diff(cell.weight_hh.grad(), plain_hh) < 1e-14);
    for (const param& p : store)
        BOOST_TEST(max_abs_diff(probe.total(p), p.grad()) < 1e-14, p.name());
    BOOST_TEST(xt::amax(xt::abs(probe.outside_steps(cell.weight_hh)))() == 0.0);

    // Step k's share is the gradient of an untied copy used only at step k.
    tape untied;
    std::vector<var> w_hh, w_ih;
    var h = untied.constant(zeros({B, H}));
    std::vector<var> hs;
    for (std::size_t k = 0; k < T; ++k)
    {
        w_hh.push_back(untied.variable(cell.weight_hh.value()));
        w_ih.push_back(untied.variable(cell.weight_ih.value()));
        h = tanh(matmul_transposed(untied.constant(xt::eval(xt::view(x, k))), w_ih.back()) +
                 untied[cell.bias_ih] + matmul_transposed(h, w_hh.back()) + untied[cell.bias_hh]);
        hs.push_back(h);
    }
    untied.backward(readout_loss(untied, hs, r));
    const auto norms = probe.state_norms();
    BOOST_TEST_REQUIRE(probe.steps() == T);
    for (std::size_t k = 0; k < T; ++k)
    {
        BOOST_TEST(max_abs_diff(probe.share(cell.weight_hh, k), w_hh[k].grad()) < 1e-14, k);
        BOOST_TEST(max_abs_diff(probe.share(cell.weight_ih, k), w_ih[k].grad()) < 1e-14, k);
        BOOST_TEST(std::abs(norms[k] - l2_norm(states[k].grad())) < 1e-14, k);
        BOOST_TEST(std::abs(probe.share_norms(cell.weight_hh)[k] - l2_norm(w_hh[k].grad())) <
                   1e-14);
    }
    BOOST_TEST(l2_norm(w_hh[0].grad()) == 0.0); // step 0 multiplies h0 = 0
    BOOST_TEST(norms[0] > 0.0);
}

BOOST_AUTO_TEST_CASE(lstm_cell_norms_and_a_readout_outside_the_steps)
{
    generator g(9);
    param_store store;
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const linear out = linear::create(store, H, 1, g, "out");
    const tensor x = g.normal({T, B, I});
    tape t;
    gradient_probe probe(t);
    expect_error([&] { gradient_probe second(t); }, {"this tape already has a probe"});
    const auto states = unroll(cell, t, constants(t, x),
                               lstm_state{t.constant(zeros({B, H})), t.constant(zeros({B, H}))});
    probe.watch(states);
    for (const auto& s : states)
        s.c.retain_grad();
    t.backward(sum(out(t, states.back().h)));
    // Only the last step's h feeds the loss; c carries gradient back through every step.
    BOOST_TEST(probe.state_norms(1)[0] == l2_norm(states[0].c.grad()));
    BOOST_TEST(probe.state_norms(1)[0] > 0.0);
    BOOST_TEST(max_abs_diff(probe.total(out.weight), out.weight.grad()) == 0.0);
    BOOST_TEST(max_abs_diff(probe.outside_steps(out.weight), out.weight.grad()) == 0.0);
    BOOST_TEST(max_abs_diff(probe.total(cell.weight_hh), cell.weight_hh.grad()) < 1e-14);
    std::ostringstream printed;
    probe.print(printed, {cell.weight_hh}, 5);
    const std::string table = printed.str();
    BOOST_TEST_MESSAGE(table);
    BOOST_TEST(table.find("|" + cell.weight_hh.name() + "@k|") != std::string::npos);
    BOOST_TEST(std::count(table.begin(), table.end(), '\n') == 1 + 2); // k = 0, 5
    expect_error([&] { (void)probe.state_norms(2); }, {"no state part 2"});
    param unused("unused", zeros({2}));
    expect_error([&] { (void)probe.total(unused); }, {"'unused' received no gradient"});
}

// Under a memory policy (Note [Memory policies]) the probe sees the same per-step shares and
// state norms: the recomputed steps run the same ops, so the contributions are the same.
BOOST_AUTO_TEST_CASE(per_step_shares_are_the_same_under_a_memory_policy)
{
    generator g(10);
    param_store store;
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const tensor x = g.normal({T, B, I});
    const tensor r = g.normal({H, 1});
    struct seen
    {
        std::vector<tensor> shares;
        std::vector<double> norms;
    };
    auto run = [&](const bptt_memory& m) {
        store.zero_grad();
        tape t;
        gradient_probe probe(t);
        unroll_options o;
        o.memory = m;
        const auto states =
            unroll(cell, t, constants(t, x),
                   lstm_state{t.constant(zeros({B, H})), t.constant(zeros({B, H}))}, o);
        probe.watch(states);
        t.backward(readout_loss(t, states, r));
        seen out{{}, probe.state_norms(1)};
        for (std::size_t k = 0; k < T; ++k)
            out.shares.push_back(probe.share(cell.weight_hh, k));
        return out;
    };
    const seen all = run(bptt_memory::all());
    for (const bptt_memory& m : {bptt_memory::every(2), bptt_memory::gemm()})
    {
        const seen r = run(m);
        for (std::size_t k = 0; k < T; ++k)
        {
            BOOST_TEST(max_abs_diff(r.shares[k], all.shares[k]) == 0.0, m.str() << " step " << k);
            BOOST_TEST(r.norms[k] == all.norms[k], m.str() << " step " << k);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
