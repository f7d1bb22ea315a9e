// Recurrent models in the float build: BPTT against a hand-written BPTT, shared-weight gradients
// as sums of per-step contributions, truncated BPTT, masked variable-length batches, and the
// error messages of the layers.
#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/models/embedding.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/linear.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/models/unroll.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

namespace
{
/// a · b for row-major matrices (m, k) · (k, n), with plain loops.
tensor mm(const tensor& a, const tensor& b)
{
    BOOST_REQUIRE(a.dimension() == 2 && b.dimension() == 2 && a.shape()[1] == b.shape()[0]);
    tensor c = zeros({a.shape()[0], b.shape()[1]});
    for (std::size_t i = 0; i < a.shape()[0]; ++i)
        for (std::size_t k = 0; k < a.shape()[1]; ++k)
            for (std::size_t j = 0; j < b.shape()[1]; ++j)
                c(i, j) += a(i, k) * b(k, j);
    return c;
}
tensor tr(const tensor& a) { return xt::transpose(a); }
/// Σ over the batch axis of a (B, n) matrix: (n,).
tensor batch_sum(const tensor& a) { return xt::sum(a, {0}); }
/// x[t] of a (T, B, F) tensor as a (B, F) tensor.
tensor step(const tensor& x, std::size_t t) { return xt::view(x, t, xt::all(), xt::all()); }
/// x[begin:end] of a (T, B, F) tensor.
tensor steps(const tensor& x, std::size_t begin, std::size_t end)
{
    return xt::view(x, xt::range(begin, end), xt::all(), xt::all());
}

std::vector<tensor> seeds_like(const std::vector<var>& ys, generator& g)
{
    std::vector<tensor> seeds;
    for (const var& y : ys)
        seeds.push_back(g.uniform(y.shape(), -1, 1));
    return seeds;
}
} // namespace

BOOST_AUTO_TEST_SUITE(models)

// The textbook BPTT of y_t = V h_t + c, h_t = tanh(W x_t + b_ih + U h_{t−1} + b_hh), written
// with plain tensors, equals the tape's backward over the unrolled cell: for every parameter, the
// input and the initial state.
BOOST_AUTO_TEST_CASE(bptt_of_a_tanh_rnn_equals_a_hand_written_bptt)
{
    constexpr std::size_t T = 5, B = 2, I = 3, H = 4, O = 2;
    param_store store;
    generator g(1);
    const rnn_cell cell = rnn_cell::create(store, I, H, g);
    const linear out = linear::create(store, H, O, g, "out.");
    const tensor x_value = g.uniform({T, B, I}, -1, 1);
    const tensor h0_value = g.uniform({B, H}, -0.5, 0.5);

    tape t;
    const var x = t.variable(x_value);
    const var h0 = t.variable(h0_value);
    const auto states = unroll(cell, t, x, h0);
    std::vector<var> ys;
    for (const var& h : states)
        ys.push_back(out(t, h));
    const std::vector<tensor> w = seeds_like(ys, g); // dL/dy_t
    t.backward(ys, w);

    const tensor& W = cell.weight_ih.value();
    const tensor& U = cell.weight_hh.value();
    const tensor& V = out.weight.value();
    std::vector<tensor> h{h0_value};
    for (std::size_t s = 0; s < T; ++s)
        h.push_back(xt::tanh(mm(step(x_value, s), tr(W)) + cell.bias_ih.value() + mm(h[s], tr(U)) +
                             cell.bias_hh.value()));
    tensor dW = zeros(W.shape()), dU = zeros(U.shape()), db = zeros({H});
    tensor dV = zeros(V.shape()), dc = zeros({O});
    tensor dx = zeros(x_value.shape());
    tensor dh_next = zeros({B, H});
    for (std::size_t s = T; s-- > 0;)
    {
        const tensor& dy = w[s];
        dV += mm(tr(dy), h[s + 1]);
        dc += batch_sum(dy);
        const tensor dh = mm(dy, V) + dh_next;            // through y_t and through h_{t+1}
        const tensor da = dh * (1 - h[s + 1] * h[s + 1]); // through tanh
        dW += mm(tr(da), step(x_value, s));
        dU += mm(tr(da), h[s]);
        db += batch_sum(da);
        xt::view(dx, s, xt::all(), xt::all()) = mm(da, W);
        dh_next = mm(da, U);
    }

    for (std::size_t s = 0; s < T; ++s)
        BOOST_TEST(max_abs_diff(states[s].value(), h[s + 1]) < 1e-6);
    BOOST_TEST(max_abs_diff(cell.weight_ih.grad(), dW) < 2e-5);
    BOOST_TEST(max_abs_diff(cell.weight_hh.grad(), dU) < 2e-5);
    BOOST_TEST(max_abs_diff(cell.bias_ih.grad(), db) < 2e-5);
    BOOST_TEST(max_abs_diff(cell.bias_hh.grad(), db) < 2e-5);
    BOOST_TEST(max_abs_diff(out.weight.grad(), dV) < 2e-5);
    BOOST_TEST(max_abs_diff(out.bias.grad(), dc) < 2e-5);
    BOOST_TEST(max_abs_diff(x.grad(), dx) < 2e-5);
    BOOST_TEST(max_abs_diff(h0.grad(), dh_next) < 2e-5);
    BOOST_TEST(xt::amax(xt::abs(dU))() > 0.01); // the recurrence really carried gradient back
}

// A weight shared by every step receives the sum of the contributions of each step: the same
// recurrence with an untied copy of every parameter per step gives per-step gradients that add
// up to the shared ones.
BOOST_AUTO_TEST_CASE(a_shared_weight_gets_the_sum_of_its_per_step_contributions)
{
    constexpr std::size_t T = 4, B = 2, I = 3, H = 5;
    param_store store;
    generator g(2);
    const gru_cell shared = gru_cell::create(store, I, H, g);
    std::vector<gru_cell> per_step;
    param_store copies;
    for (std::size_t s = 0; s < T; ++s)
    {
        gru_cell c = shared;
        auto copy = [&](const param& p) {
            return copies.add(p.name() + "_step" + std::to_string(s), p.value());
        };
        c.weight_ih = copy(shared.weight_ih);
        c.weight_hh = copy(shared.weight_hh);
        c.bias_ih = copy(shared.bias_ih);
        c.bias_hh = copy(shared.bias_hh);
        per_step.push_back(c);
    }
    const tensor x_value = g.uniform({T, B, I}, -1, 1);
    const tensor h0_value = g.uniform({B, H}, -0.5, 0.5);
    std::vector<tensor> w;
    for (std::size_t s = 0; s < T; ++s)
        w.push_back(g.uniform({B, H}, -1, 1));

    tape t1;
    const auto states = unroll(shared, t1, t1.constant(x_value), t1.constant(h0_value));
    t1.backward(outputs(states), w);

    tape t2;
    std::vector<var> hs;
    var h = t2.constant(h0_value);
    for (std::size_t s = 0; s < T; ++s)
        hs.push_back(h = unfold::step(per_step[s], t2, t2.constant(step(x_value, s)), h));
    t2.backward(hs, w);

    // Equal up to float round-off: a GEMM over T·B rows may group its sums unlike T GEMMs over B
    // rows (oneDNN's does, Note [GEMM backends]).
    for (std::size_t s = 0; s < T; ++s)
        BOOST_TEST(max_abs_diff(hs[s].value(), states[s].value()) <= 1e-6);
    auto check = [&](const param& p, param gru_cell::*member) {
        tensor sum = zeros(p.shape());
        for (const gru_cell& c : per_step)
            sum += (c.*member).grad();
        BOOST_TEST(max_abs_diff(p.grad(), sum) < 1e-5, p.name());
        // the contributions are genuinely different per step
        BOOST_TEST(max_abs_diff((per_step[0].*member).grad(), (per_step[1].*member).grad()) > 1e-3);
    };
    check(shared.weight_ih, &gru_cell::weight_ih);
    check(shared.weight_hh, &gru_cell::weight_hh);
    check(shared.bias_ih, &gru_cell::bias_ih);
    check(shared.bias_hh, &gru_cell::bias_hh);
}

// Truncated BPTT: chunk 2 starts from chunk 1's last state detached onto a new tape. The carried
// state equals the full-sequence state at the boundary, chunk 2 reproduces the full sequence's
// states, and chunk 2's loss sends nothing into chunk 1 (whose cell has its own parameters here,
// so "nothing" is visible), while without the detach it would.
BOOST_AUTO_TEST_CASE(truncated_bptt_stops_at_the_chunk_boundary)
{
    constexpr std::size_t T = 6, B = 2, I = 3, H = 4, K = 3;
    param_store store;
    generator g(3);
    const lstm_cell first = lstm_cell::create(store, I, H, g, {}, {"", "_chunk1"});
    lstm_cell second = first; // same values, own parameters
    second.weight_ih = store.add("weight_ih_chunk2", first.weight_ih.value());
    second.weight_hh = store.add("weight_hh_chunk2", first.weight_hh.value());
    second.bias_ih = store.add("bias_ih_chunk2", first.bias_ih.value());
    second.bias_hh = store.add("bias_hh_chunk2", first.bias_hh.value());
    const tensor x_value = g.uniform({T, B, I}, -1, 1);
    const tensor w2 = g.uniform({B, H}, -1, 1);

    // The whole sequence on one tape: chunk 1 with `first`, chunk 2 with `second`.
    tape full;
    const lstm_state s0 = zero_state<lstm_state>(full, B, H);
    const auto a = unroll(first, full, full.constant(steps(x_value, 0, K)), s0);
    const auto b = unroll(second, full, full.constant(steps(x_value, K, T)), a.back());
    full.backward(b.back().h, w2);
    BOOST_TEST(xt::amax(xt::abs(first.weight_hh.grad()))() > 1e-4); // untruncated: reaches chunk 1
    store.zero_grad();

    // Truncated: chunk 2 on its own tape from chunk 1's detached state.
    tape t1;
    const auto c1 =
        unroll(first, t1, t1.constant(steps(x_value, 0, K)), zero_state<lstm_state>(t1, B, H));
    tape t2;
    const lstm_state carried = detach_state(t2, c1.back());
    BOOST_TEST(!carried.h.requires_grad());
    BOOST_TEST(max_abs_diff(carried.h.value(), a.back().h.value()) == 0.0);
    BOOST_TEST(max_abs_diff(carried.c.value(), a.back().c.value()) == 0.0);
    const auto c2 = unroll(second, t2, t2.constant(steps(x_value, K, T)), carried);
    for (std::size_t s = 0; s < T - K; ++s)
        BOOST_TEST(max_abs_diff(c2[s].h.value(), b[s].h.value()) == 0.0);
    t2.backward(c2.back().h, w2);
    for (const param& p : {first.weight_ih, first.weight_hh, first.bias_ih, first.bias_hh})
        BOOST_TEST(xt::amax(xt::abs(p.grad()))() == 0.0, p.name());
    BOOST_TEST(xt::amax(xt::abs(second.weight_hh.grad()))() > 1e-4);

    // One tape reused: save, clear, restore. The released chunk's vars are stale.
    const saved_state<lstm_state> saved = save_state(c1.back());
    t1.clear();
    expect_error([&] { (void)c1.back().h.value(); }, {"cleared tape"});
    const lstm_state restored = saved.on(t1);
    const auto c3 = unroll(second, t1, t1.constant(steps(x_value, K, T)), restored);
    BOOST_TEST(max_abs_diff(c3.back().c.value(), b.back().c.value()) == 0.0);
}

// The same at the layer level: a 2-layer LSTM run in two chunks, carrying (h_n, c_n) detached,
// gives the full run's outputs.
BOOST_AUTO_TEST_CASE(a_layer_carries_its_final_state_into_the_next_chunk)
{
    constexpr std::size_t T = 6, B = 2, I = 3, H = 4, K = 2;
    param_store store;
    generator g(4);
    layer_options lo;
    lo.num_layers = 2;
    const auto l = lstm_layer(store, I, H, g, lo);
    const tensor x = g.uniform({T, B, I}, -1, 1);

    tape full;
    const layer_result whole = l(full, full.constant(x));
    tape t1;
    const layer_result r1 = l(t1, t1.constant(steps(x, 0, K)));
    tape t2;
    const layer_result r2 = l(t2, t2.constant(steps(x, K, T)), detach_state(t2, r1.final_state));
    // Up to float round-off: the chunks' input projections are GEMMs over fewer rows, which may
    // group their sums differently (oneDNN's do, Note [GEMM backends]).
    BOOST_TEST(max_abs_diff(r1.output.value(), steps(whole.output.value(), 0, K)) <= 1e-6);
    BOOST_TEST(max_abs_diff(r2.output.value(), steps(whole.output.value(), K, T)) <= 1e-6);
    BOOST_TEST(max_abs_diff(r2.c_n().value(), whole.c_n().value()) <= 1e-6);
}

// A padded batch of lengths {4, 2, 3} through a bidirectional 2-layer LSTM: padded steps output
// zeros and get zero gradient, and everything — outputs, final states, gradients of the input,
// the initial state and every parameter — equals running each sequence alone at its own length.
BOOST_AUTO_TEST_CASE(a_masked_batch_equals_each_sequence_run_alone)
{
    constexpr std::size_t T = 4, B = 3, I = 3, H = 4;
    const std::vector<std::size_t> lengths{4, 2, 3};
    param_store store;
    generator g(5);
    layer_options lo;
    lo.num_layers = 2;
    lo.bidirectional = true;
    const auto l = lstm_layer(store, I, H, g, lo);
    const tensor x_value = g.uniform({T, B, I}, -1, 1);
    const tensor h0_value = g.uniform({4, B, H}, -0.5, 0.5);
    const tensor c0_value = g.uniform({4, B, H}, -0.5, 0.5);
    const tensor w_out = g.uniform({T, B, 2 * H}, -1, 1);
    const tensor w_h = g.uniform({4, B, H}, -1, 1);

    tape t;
    const var x = t.variable(x_value);
    const var h0 = t.variable(h0_value);
    const var c0 = t.variable(c0_value);
    const layer_result r = l(t, x, {h0, c0}, lengths);
    BOOST_TEST(r.output.shape() == shape_type({T, B, 2 * H}));
    BOOST_TEST(r.last.shape() == shape_type({B, 2 * H}));
    t.backward({r.output, r.h_n()}, {w_out, w_h});
    std::vector<tensor> batch_grads;
    for (const param& p : l.params())
        batch_grads.push_back(p.grad());
    store.zero_grad();

    for (std::size_t b = 0; b < B; ++b)
        for (std::size_t s = lengths[b]; s < T; ++s)
        {
            BOOST_TEST(xt::amax(xt::abs(xt::view(r.output.value(), s, b, xt::all())))() == 0.0);
            BOOST_TEST(xt::amax(xt::abs(xt::view(x.grad(), s, b, xt::all())))() == 0.0);
        }

    auto column = [](const tensor& v, std::size_t b) -> tensor {
        return xt::view(v, xt::all(), xt::range(b, b + 1), xt::all());
    };
    for (std::size_t b = 0; b < B; ++b)
    {
        const std::size_t n = lengths[b];
        tape tb;
        const var xb = tb.variable(steps(column(x_value, b), 0, n));
        const var hb = tb.variable(column(h0_value, b));
        const var cb = tb.variable(column(c0_value, b));
        const layer_result rb = l(tb, xb, {hb, cb});
        BOOST_TEST(max_abs_diff(rb.output.value(), steps(column(r.output.value(), b), 0, n)) <
                   1e-6);
        BOOST_TEST(max_abs_diff(rb.h_n().value(), column(r.h_n().value(), b)) < 1e-6);
        BOOST_TEST(max_abs_diff(rb.c_n().value(), column(r.c_n().value(), b)) < 1e-6);
        tensor last = rb.last.value();
        BOOST_TEST(max_abs_diff(last, xt::view(r.last.value(), xt::range(b, b + 1), xt::all())) <
                   1e-6);
        tb.backward({rb.output, rb.h_n()}, {steps(column(w_out, b), 0, n), column(w_h, b)});
        BOOST_TEST(max_abs_diff(xb.grad(), steps(column(x.grad(), b), 0, n)) < 1e-5);
        BOOST_TEST(max_abs_diff(hb.grad(), column(h0.grad(), b)) < 1e-5);
        BOOST_TEST(max_abs_diff(cb.grad(), column(c0.grad(), b)) < 1e-5);
    }
    // parameter gradients accumulated over the three single-sequence runs
    for (std::size_t k = 0; k < l.params().size(); ++k)
        BOOST_TEST(max_abs_diff(l.params()[k].grad(), batch_grads[k]) < 2e-5, l.params()[k].name());
}

BOOST_AUTO_TEST_CASE(a_sequence_given_step_by_step_runs_like_one_tensor)
{
    param_store store;
    generator g(10);
    layer_options lo;
    lo.bidirectional = true;
    const auto l = gru_layer(store, 3, 4, g, lo);
    const tensor x = g.uniform({3, 2, 3}, -1, 1);
    tape t;
    const layer_result whole = l(t, t.constant(x));
    std::vector<var> xs;
    for (std::size_t s = 0; s < 3; ++s)
        xs.push_back(t.constant(step(x, s)));
    const layer_result stepped = l(t, xs, {}, {3, 2});
    BOOST_TEST(max_abs_diff(stepped.output.value(), whole.output.value()) > 0.0); // masked
    const layer_result unmasked = l(t, xs);
    BOOST_TEST(max_abs_diff(unmasked.output.value(), whole.output.value()) == 0.0);
    BOOST_TEST(max_abs_diff(unmasked.h_n().value(), whole.h_n().value()) == 0.0);
    xs[1] = t.constant(zeros({2, 4}));
    expect_error([&] { (void)l(t, xs); }, {"gru layer", "step 1", "(2, 4)", "(2, 3)"});
}

BOOST_AUTO_TEST_CASE(dropout_between_layers_only_while_training)
{
    param_store store;
    generator g(6);
    layer_options lo;
    lo.num_layers = 2;
    lo.dropout = 0.5;
    auto l = gru_layer(store, 3, 4, g, lo);
    const tensor x = g.uniform({3, 2, 3}, -1, 1);
    auto run = [&] {
        tape t;
        return tensor(l(t, t.constant(x)).output.value());
    };
    const tensor evaluated = run();
    BOOST_TEST(!l.training());
    BOOST_TEST(max_abs_diff(run(), evaluated) == 0.0);
    generator rng(7);
    l.train(rng);
    const tensor trained = run();
    BOOST_TEST(max_abs_diff(trained, evaluated) > 1e-3);
    BOOST_TEST(max_abs_diff(run(), trained) > 1e-3); // a fresh mask per call
    l.eval();
    BOOST_TEST(max_abs_diff(run(), evaluated) == 0.0);
}

BOOST_AUTO_TEST_CASE(embedding_feeds_a_layer_and_gathers_gradients_of_repeated_tokens)
{
    param_store store;
    generator g(8);
    const embedding emb = embedding::create(store, 5, 3, g, "emb.");
    const auto l = rnn_layer(store, 3, 4, g);
    tape t;
    const var e = emb(t, {1, 4, 1, 0, 2, 1}, {3, 2}); // (T = 3, B = 2) tokens
    BOOST_TEST(e.shape() == shape_type({3, 2, 3}));
    BOOST_TEST(max_abs_diff(step(e.value(), 1),
                            xt::view(emb.weight.value(), xt::keep(1, 0), xt::all())) == 0.0);
    const layer_result r = l(t, e);
    t.backward(r.output, xt::ones<real>(r.output.shape()));
    BOOST_TEST(xt::amax(xt::abs(xt::view(emb.weight.grad(), 3, xt::all())))() == 0.0); // unused
    BOOST_TEST(xt::amax(xt::abs(xt::view(emb.weight.grad(), 1, xt::all())))() > 0.0);
}

BOOST_AUTO_TEST_CASE(shape_errors_name_the_layer_and_both_shapes)
{
    param_store store;
    generator g(9);
    const auto lstm = lstm_layer(store, 5, 4, g, {}, {});
    layer_options lo;
    lo.prefix = "g.";
    const auto gru = gru_layer(store, 5, 4, g, lo);
    tape t;
    const var x = t.constant(zeros({4, 2, 5}));
    expect_error(
        [&] {
            (void)lstm(t, t.constant(zeros({4, 2, 6})));
        },
        {"lstm layer", "(4, 2, 6)", "(T, B, 5)"});
    expect_error([&] { (void)lstm(t, t.constant(zeros({2, 5}))); }, {"lstm layer", "(2, 5)"});
    const var h0_bad_batch = t.constant(zeros({1, 3, 4}));
    expect_error(
        [&] {
            (void)lstm(t, x, {h0_bad_batch, h0_bad_batch});
        },
        {"lstm layer", "(1, 3, 4)", "(4, 2, 5)", "(1, 2, 4)"});
    const var h0 = t.constant(zeros({1, 2, 4}));
    expect_error([&] { (void)gru(t, x, {h0, h0}); }, {"gru layer", "2 parts", "has 1"});
    expect_error([&] { (void)gru(t, x, {h0}, {4, 1, 2}); }, {"gru layer", "3 lengths", "batch 2"});
    expect_error([&] { (void)gru(t, x, {h0}, {4, 5}); }, {"gru layer", "length 5", "4 steps"});
    // a cell run directly: the batch of the step and of the state differ
    expect_error(
        [&] {
            (void)unroll(gru.cell(0), t, x, t.constant(zeros({3, 4})));
        },
        {"unroll", "the sequence has shape (4, 2, 5)", "(3, 4)", "batch sizes differ"});
}

BOOST_AUTO_TEST_SUITE_END()
