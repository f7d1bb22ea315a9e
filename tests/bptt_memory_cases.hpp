#pragma once
// Memory policies for BPTT (Note [Memory policies]), in both builds: every policy gives gradients
// bit-identical to keeping everything, for the built-in cells, a user's cell, a 2-layer
// bidirectional masked layer and the decoder under teacher forcing and scheduled sampling; what it
// keeps is measurably less; values dropped inside a segment are recomputed when read.
#include <array>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/models/bptt_memory.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/embedding.hpp>
#include <unfold/models/feeding.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/recurrent_dropout.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/ops/dropout.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/scale_shift.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/sum.hpp>
#include <unfold/ops/tanh.hpp>

namespace bptt_memory_cases
{
using namespace unfold;

/// A cell a user writes from primitive ops, without project(): a minimal gated unit,
///     z = σ(x W_zᵀ + h U_zᵀ),  h' = h + z ⊙ (tanh(x Wᵀ + h Uᵀ + b) − h),
/// with dropout on its candidate when given a generator (an op that draws in forward).
struct user_cell
{
    using state = var;
    param w_z, u_z, w, u, b;
    generator* drop = nullptr;

    static user_cell create(param_store& store, std::size_t input, std::size_t hidden, generator& g)
    {
        auto make = [&](const std::string& name, shape_type shape) {
            return store.add(name, g.uniform(shape, -0.5, 0.5));
        };
        return {make("w_z", {hidden, input}), make("u_z", {hidden, hidden}),
                make("w", {hidden, input}), make("u", {hidden, hidden}), make("b", {hidden})};
    }
    var operator()(tape& t, const var& x, const var& h) const
    {
        const var z = sigmoid(matmul_transposed(x, t[w_z]) + matmul_transposed(h, t[u_z]));
        var candidate = tanh(matmul_transposed(x, t[w]) + matmul_transposed(h, t[u]) + t[b]);
        if (drop)
            candidate = dropout(candidate, real(0.25), *drop);
        return h + z * (candidate - h);
    }
};

/// The values, bit for bit: same shape and same bytes.
inline bool identical(const tensor& a, const tensor& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(real)) == 0;
}

/// What one run gives: its loss, the tape's bytes after forward, every parameter's gradient.
struct run_result
{
    real loss = 0;
    std::size_t bytes_after_forward = 0;
    std::size_t peak = 0; ///< the tape's, after backward
    std::vector<tensor> grads;
};

/// Runs `forward` (which records on the tape and returns the loss) then backward, from zeroed
/// gradients.
inline run_result run(param_store& store, const std::function<var(tape&)>& forward)
{
    store.zero_grad();
    tape t;
    const var loss = forward(t);
    run_result r;
    r.bytes_after_forward = t.bytes_held();
    t.backward(loss);
    r.peak = t.peak_bytes();
    r.loss = loss.item();
    for (const param& p : store)
        r.grads.push_back(p.grad());
    return r;
}

/// Every policy's gradients and loss equal `all`'s bit for bit; returns the runs by policy.
inline std::vector<run_result> expect_identical(
    param_store& store, const std::vector<bptt_memory>& policies,
    const std::function<var(tape&, const bptt_memory&)>& forward)
{
    const run_result all = run(store, [&](tape& t) { return forward(t, bptt_memory::all()); });
    std::vector<run_result> runs;
    for (const bptt_memory& m : policies)
    {
        runs.push_back(run(store, [&](tape& t) { return forward(t, m); }));
        const run_result& r = runs.back();
        BOOST_TEST(r.loss == all.loss, m.str());
        for (std::size_t i = 0; i < all.grads.size(); ++i)
            BOOST_TEST(identical(r.grads[i], all.grads[i]),
                       m.str() << ": gradient of parameter " << i << " differs");
    }
    return runs;
}

inline std::vector<bptt_memory> policies()
{
    return {bptt_memory::every(1),       bptt_memory::every(3),
            bptt_memory::every(8),       bptt_memory::every(1000),
            bptt_memory::gemm(),         bptt_memory::every(4, 0, bptt_memory::every_step),
            bptt_memory::every(3, 0, 5), bptt_memory::every(2, 3, bptt_memory::every_step)};
}

/// Σ_t Σ h_t² · w_t over the outputs (a loss that weighs every step differently).
template <class S>
var weighted_loss(const std::vector<S>& states)
{
    var loss;
    for (std::size_t k = 0; k < states.size(); ++k)
    {
        const var h = hidden(states[k]);
        const var l = sum(h * h) * real(h.value().size()) + sum(h) * real(k + 1);
        loss = loss.defined() ? loss + l : l;
    }
    return loss;
}

/// A cell unrolled over T steps of a batch of B, its outputs read after the loop or consumed by
/// each_step inside it, under every policy.
template <class S, class Cell>
void check_cell(param_store& store, const Cell& cell, std::size_t T, std::size_t B, std::size_t I,
                std::size_t H)
{
    generator g(17);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    for (bool inside : {false, true})
    {
        BOOST_TEST_CONTEXT((inside ? "loss inside each step" : "loss after the loop"))
        {
            expect_identical(store, policies(), [&](tape& t, const bptt_memory& m) {
                unroll_options o;
                o.memory = m;
                const S s0 = zero_state<S>(t, B, H);
                if (!inside)
                    return weighted_loss(unroll(cell, t, t.constant(x), s0, o));
                var loss;
                unroll(cell, t, t.constant(x), s0, o, [&](std::size_t k, const S& s) {
                    const var h = hidden(s);
                    const var l = sum(h * h) * real(h.value().size()) + sum(h) * real(k + 1);
                    loss = loss.defined() ? loss + l : l;
                });
                return loss;
            });
        }
    }
}

/// check_cell for a Cell made by Cell::create(store, I, H, g) from `seed`.
template <class Cell>
void check_created(std::uint64_t seed, std::size_t T, std::size_t B, std::size_t I, std::size_t H)
{
    param_store store;
    generator g(seed);
    check_cell<typename Cell::state>(store, Cell::create(store, I, H, g), T, B, I, H);
}

inline void cells_give_identical_gradients()
{
    constexpr std::size_t T = 37, B = 3, I = 4, H = 5;
    check_created<rnn_cell>(1, T, B, I, H);
    check_created<gru_cell>(2, T, B, I, H);
    check_created<lstm_cell>(3, T, B, I, H);
    check_created<user_cell>(4, T, B, I, H);
}

// A batch of 64 projects its input in chunks of 256 / 64 = 4 steps (detail::projection_rows):
// 150 steps make 38 chunks, which segments of 3 steps straddle and segments of 8 cover two at a
// time.
inline void projection_chunks_give_identical_gradients()
{
    constexpr std::size_t T = 150, B = 64, I = 3, H = 4;
    param_store store;
    generator g(5);
    check_cell<lstm_state>(store, lstm_cell::create(store, I, H, g), T, B, I, H);
}

// A sequence given by chunks (an embedding's gather of each chunk's tokens), as a long
// sequence's input is fed: the same gradients, the embedding's included, and under a policy the
// gathered input never exists whole.
inline void a_sequence_given_by_chunks_gives_identical_gradients()
{
    constexpr std::size_t T = 130, B = 64, E = 16, H = 5, V = 11;
    param_store store;
    generator g(18);
    const embedding embed = embedding::create(store, V, E, g, "embed.");
    const lstm_cell cell = lstm_cell::create(store, E, H, g);
    std::vector<std::size_t> tokens;
    const tensor u = g.uniform({T * B}, 0, real(V) - real(0.01));
    for (std::size_t i = 0; i < T * B; ++i)
        tokens.push_back(std::size_t(u(i)));
    const auto runs = expect_identical(store, policies(), [&](tape& t, const bptt_memory& m) {
        const input_sequence xs(T, B, E, [&](std::size_t first, std::size_t count) {
            return embed(
                t,
                std::vector<std::size_t>(tokens.begin() + std::ptrdiff_t(first * B),
                                         tokens.begin() + std::ptrdiff_t((first + count) * B)),
                {count, B});
        });
        unroll_options o;
        o.memory = m;
        var loss;
        unroll(cell, t, xs, zero_state<lstm_state>(t, B, H), o,
               [&](std::size_t, const lstm_state& s) {
                   loss = loss.defined() ? loss + sum(s.h * s.h) : sum(s.h * s.h);
               });
        return loss;
    });
    BOOST_TEST(runs[1].bytes_after_forward < T * B * E * sizeof(real)); // every:3
}

// Truncated BPTT under a policy: each chunk on its own tape from the previous chunk's detached
// state, with the parameters' gradients accumulated over the chunks.
inline void truncated_bptt_gives_identical_gradients()
{
    constexpr std::size_t T = 40, B = 3, I = 4, H = 5, chunk = 13;
    param_store store;
    generator g(19);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    auto train = [&](const bptt_memory& m) {
        store.zero_grad();
        saved_state<lstm_state> carried{{zeros({B, H}), zeros({B, H})}};
        for (std::size_t first = 0; first < T; first += chunk)
        {
            const std::size_t n = std::min(chunk, T - first);
            tape t;
            unroll_options o;
            o.memory = m;
            const tensor part = xt::view(x, xt::range(first, first + n), xt::all(), xt::all());
            const auto states = unroll(cell, t, t.constant(part), carried.on(t), o);
            t.backward(weighted_loss(states));
            carried = save_state(states.back());
        }
        std::vector<tensor> grads;
        for (const param& p : store)
            grads.push_back(p.grad());
        return grads;
    };
    const auto all = train(bptt_memory::all());
    for (const bptt_memory& m : policies())
    {
        const auto r = train(m);
        for (std::size_t i = 0; i < all.size(); ++i)
            BOOST_TEST(identical(r[i], all[i]), m.str());
    }
}

// A cell whose forward draws (dropout) keeps that op's value: it is never drawn twice.
inline void an_op_that_draws_is_kept()
{
    constexpr std::size_t T = 20, B = 2, I = 3, H = 4;
    param_store store;
    generator g(6);
    user_cell cell = user_cell::create(store, I, H, g);
    generator masks(0);
    cell.drop = &masks;
    const tensor x = g.uniform({T, B, I}, -1, 1);
    expect_identical(store, policies(), [&](tape& t, const bptt_memory& m) {
        masks = generator(7);
        unroll_options o;
        o.memory = m;
        return weighted_loss(unroll(cell, t, t.constant(x), t.constant(zeros({B, H})), o));
    });
}

// Two stacked bidirectional LSTM layers over a padded batch, with dropout between the layers and
// recurrent dropout on the first: outputs, final state and every gradient.
inline void a_bidirectional_masked_stack_gives_identical_gradients()
{
    constexpr std::size_t T = 23, B = 4, I = 3, H = 5;
    param_store store;
    generator g(8);
    layer_options lo;
    lo.num_layers = 2;
    lo.bidirectional = true;
    lo.dropout = real(0.3);
    layer<lstm_cell> l = lstm_layer(store, I, H, g, lo);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    const std::vector<std::size_t> lengths{23, 9, 17, 1};
    generator masks(0);
    l.train(masks);
    expect_identical(store, policies(), [&](tape& t, const bptt_memory& m) {
        masks = generator(9);
        l.set_bptt_memory(m);
        const layer_result r = l(t, t.constant(x), {}, lengths);
        return sum(r.output * r.output) + sum(r.h_n()) * real(3) + sum(r.c_n());
    });
}

/// Random tokens of a vocabulary of V: T steps of B sequences, each step's target the next input.
inline token_batch random_batch(std::size_t T, std::size_t B, std::size_t V, generator& g)
{
    token_batch b;
    b.steps = T;
    b.batch = B;
    const tensor u = g.uniform({T + 1, B}, 0, real(V) - real(0.01));
    for (std::size_t k = 0; k < T; ++k)
        for (std::size_t s = 0; s < B; ++s)
        {
            b.inputs.push_back(std::size_t(u(k, s)));
            b.targets.push_back(k == 0 && s == 0 ? token_batch::ignore_index
                                                 : std::int64_t(u(k + 1, s)));
        }
    return b;
}

// The decoder under teacher forcing (layer by layer) and scheduled sampling (step by step, the
// model's own argmax fed back), with recurrent dropout: the fed tokens and masks are data, so
// the recomputed steps see the same ones.
inline void the_decoder_gives_identical_gradients()
{
    constexpr std::size_t T = 19, B = 3, V = 7;
    param_store store;
    generator g(10);
    decoder<lstm_cell> d =
        make_decoder(store, V, 4, 6, 2, g, [&](param_store& s, std::size_t in, layer_options lo) {
            return lstm_layer(s, in, 6, g, lo);
        });
    d.set_recurrent_dropout(real(0.2));
    const token_batch b = random_batch(T, B, V, g);
    generator masks(0), coins(0);
    for (bool teacher : {true, false})
    {
        BOOST_TEST_CONTEXT((teacher ? "teacher forcing" : "scheduled sampling"))
        {
            std::vector<std::vector<std::vector<std::size_t>>> fed;
            expect_identical(store, policies(), [&](tape& t, const bptt_memory& m) {
                masks = generator(11);
                coins = generator(12);
                d.train(masks);
                d.set_bptt_memory(m);
                teacher_forcing tf;
                scheduled_sampling ss(teacher_schedules::constant(0.5), coins);
                feeding_policy& policy = teacher ? static_cast<feeding_policy&>(tf) : ss;
                const auto r = d.run(t, b, policy);
                fed.push_back(r.fed);
                return sequence_loss(r, b);
            });
            for (const auto& f : fed)
                BOOST_TEST((f == fed.front()));
        }
    }
}

// What a policy keeps: an LSTM of 64 sequences over 200 steps, its loss inside each step.
// Keeping everything backward reads holds 7 values of H per step (the gates, c, φ(c), h);
// keeping the state every 8 steps, under 15% of that; keeping GEMM outputs and states, less;
// keeping GEMM outputs and the state every 8 steps, about the 4 pre-activations of the gates.
inline void policies_keep_less()
{
    constexpr std::size_t T = 200, B = 64, I = 16, H = 16;
    param_store store;
    generator g(13);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    const auto runs = expect_identical(
        store, {bptt_memory::every(8), bptt_memory::gemm(), bptt_memory::parse("every:8,gemm")},
        [&](tape& t, const bptt_memory& m) {
            unroll_options o;
            o.memory = m;
            var loss;
            unroll(cell, t, t.constant(x), zero_state<lstm_state>(t, B, H), o,
                   [&](std::size_t, const lstm_state& s) {
                       loss = loss.defined() ? loss + sum(s.h) : sum(s.h);
                   });
            return loss;
        });
    const std::size_t input = T * B * I * sizeof(real); // the data: kept by every policy
    const run_result all = run(store, [&](tape& t) {
        var loss;
        unroll(cell, t, t.constant(x), zero_state<lstm_state>(t, B, H), {},
               [&](std::size_t, const lstm_state& s) {
                   loss = loss.defined() ? loss + sum(s.h) : sum(s.h);
               });
        return loss;
    });
    const double every = double(runs[0].bytes_after_forward - input);
    const double gemm = double(runs[1].bytes_after_forward - input);
    const double gemm_every_8 = double(runs[2].bytes_after_forward - input);
    const double kept = double(all.bytes_after_forward - input);
    BOOST_TEST_MESSAGE("BPTT bytes kept: all " << kept << ", every:8 " << every << ", gemm " << gemm
                                               << ", every:8,gemm " << gemm_every_8);
    BOOST_TEST(every < 0.15 * kept);
    BOOST_TEST(gemm < kept);
    // 4 of 7 values of H a step, a state (2 of H) every 8 steps, the last segment whole.
    BOOST_TEST(gemm_every_8 < (4 * T + 2 * T / 8 + 16 * 8) / (7.0 * T) * kept);
    BOOST_TEST(gemm_every_8 > every);
}

// A value dropped inside a segment is recomputed when read, equal to the kept one; retain_grad
// and hooks on values inside segments see the same gradients.
inline void dropped_values_are_recomputed_when_read()
{
    constexpr std::size_t T = 12, B = 2, I = 3, H = 4;
    param_store store;
    generator g(14);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    struct seen
    {
        tensor c3, c3_grad, h5_grad;
    };
    auto run_with = [&](const bptt_memory& m) {
        seen out;
        tape t;
        unroll_options o;
        o.memory = m;
        const auto states = unroll(cell, t, t.constant(x), zero_state<lstm_state>(t, B, H), o);
        states[3].c.retain_grad();
        states[5].h.register_hook([&](const tensor& grad) { out.h5_grad = grad; });
        t.backward(weighted_loss(states));
        out.c3 = states[3].c.value();
        out.c3_grad = states[3].c.grad();
        return out;
    };
    const seen all = run_with(bptt_memory::all());
    for (const bptt_memory& m :
         {bptt_memory::every(4), bptt_memory::gemm(), bptt_memory::parse("every:4,gemm:6")})
    {
        const seen r = run_with(m);
        BOOST_TEST(identical(r.c3, all.c3), m.str());
        BOOST_TEST(identical(r.c3_grad, all.c3_grad), m.str());
        BOOST_TEST(identical(r.h5_grad, all.h5_grad), m.str());
    }
    // The value of a dropped intermediate, read during forward, is recomputed on the spot.
    tape t;
    unroll_options o;
    o.memory = bptt_memory::every(2);
    const auto states = unroll(cell, t, t.constant(x), zero_state<lstm_state>(t, B, H), o);
    BOOST_TEST(identical(states[3].c.value(), all.c3));
}

/// An LSTM run under `memory`, its loss inside each step or after the loop.
inline run_result lstm_run(param_store& store, const lstm_cell& cell, const tensor& x,
                           const bptt_memory& memory, bool inside)
{
    const std::size_t B = x.shape()[1], H = cell.hidden_size();
    return run(store, [&](tape& t) {
        unroll_options o;
        o.memory = memory;
        var loss;
        auto add = [&](std::size_t, const lstm_state& s) {
            loss = loss.defined() ? loss + sum(s.h) : sum(s.h);
        };
        if (inside)
            unroll(cell, t, t.constant(x), zero_state<lstm_state>(t, B, H), o, add);
        else
            for (const lstm_state& s :
                 unroll(cell, t, t.constant(x), zero_state<lstm_state>(t, B, H), o))
                add(0, s);
        return loss;
    });
}

// plan_unroll predicts the tape's peak (which comes during backward) within 10%, for every
// policy, before anything runs.
inline void plans_predict_the_peak()
{
    constexpr std::size_t T = 400, B = 32, I = 32, H = 32;
    param_store store;
    generator g(15);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    for (bool inside : {false, true})
        for (const bptt_memory& m :
             {bptt_memory::all(), bptt_memory::gemm(), bptt_memory::every(8),
              bptt_memory::every(16), bptt_memory::every(20, 100),
              bptt_memory::parse("every:8,gemm"), bptt_memory::parse("every:16,gemm:200"),
              bptt_memory::parse("every:8,gemm,stored:100")})
        {
            store.zero_grad(); // as a training step plans (Note [Gradient accumulation])
            const bptt_plan plan = plan_unroll(cell, T, B, I, H, m, !inside);
            const run_result r = lstm_run(store, cell, x, m, inside);
            const double ratio = double(plan.predicted_bytes) / double(r.peak);
            BOOST_TEST_MESSAGE(plan.str() << (inside ? " (inside)" : " (after)") << ": measured "
                                          << r.peak << ", predicted/measured " << ratio);
            BOOST_TEST(ratio > 0.9, plan.str());
            BOOST_TEST(ratio < 1.1, plan.str());
            BOOST_TEST(plan.policy.str() == m.str());
            BOOST_TEST(r.peak >= r.bytes_after_forward);
        }
}

// A budget resolves to the policy that costs least within it: everything; else segments keeping
// their GEMM outputs with more steps stored as the budget grows; else segments recomputed whole
// with more of them keeping GEMM outputs as it grows. Each runs within it (up to the
// prediction's 10%) and gives the same gradients; below the least any policy needs, a clear
// error names that minimum.
inline void budgets_pick_the_cheapest_policy_that_fits()
{
    using unfold::testing::expect_error;
    constexpr std::size_t T = 400, B = 32, I = 32, H = 32;
    param_store store;
    generator g(16);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    const auto plan = [&](const bptt_memory& m) {
        store.zero_grad(); // as a training step plans (Note [Gradient accumulation])
        return plan_unroll(cell, T, B, I, H, m, false);
    };
    const std::size_t all = plan(bptt_memory::all()).predicted_bytes;
    const std::size_t least = plan(bptt_memory::every(8)).predicted_bytes;
    const std::size_t cheap = plan(bptt_memory::parse("every:16,gemm")).predicted_bytes;
    BOOST_TEST(least < cheap);
    BOOST_TEST(cheap < all);
    BOOST_TEST(plan(bptt_memory::budget(all)).policy.str() == "all");
    const run_result reference = lstm_run(store, cell, x, bptt_memory::all(), true);
    auto runs_within = [&](std::size_t budget) {
        const run_result r = lstm_run(store, cell, x, bptt_memory::budget(budget), true);
        BOOST_TEST(double(r.peak) <= 1.1 * double(budget));
        for (std::size_t i = 0; i < reference.grads.size(); ++i)
            BOOST_TEST(identical(r.grads[i], reference.grads[i]));
    };
    // Between the least and segments that all keep their GEMM outputs: more of them keep theirs.
    std::size_t previous_whole = T + 1, previous_cheap = 0;
    for (const double fraction : {0.0, 0.3, 0.9})
    {
        const std::size_t budget = least + std::size_t(fraction * double(cheap - least));
        const bptt_plan p = plan(bptt_memory::budget(budget));
        BOOST_TEST_MESSAGE("budget " << budget << ": " << p.str());
        BOOST_TEST((p.policy.how == bptt_memory::kind::every));
        BOOST_TEST(p.policy.stored == 0u);
        BOOST_TEST(p.predicted_bytes <= budget);
        BOOST_TEST(p.recomputed_steps < previous_whole); // more memory, less recomputed whole
        BOOST_TEST(p.recomputed_steps + p.cheap_steps < T);
        BOOST_TEST(p.cheap_steps >= previous_cheap);
        previous_whole = p.recomputed_steps;
        previous_cheap = p.cheap_steps;
        runs_within(budget);
    }
    BOOST_TEST(previous_cheap > 0u);
    // Between those and everything: all keep their GEMM outputs, more steps are stored.
    std::size_t previous_stored = 0;
    for (const double fraction : {0.05, 0.5, 0.95})
    {
        const std::size_t budget = cheap + std::size_t(fraction * double(all - cheap));
        const bptt_plan p = plan(bptt_memory::budget(budget));
        BOOST_TEST_MESSAGE("budget " << budget << ": " << p.str());
        BOOST_TEST(p.policy.cheap == bptt_memory::every_step);
        BOOST_TEST(p.recomputed_steps == 0u);
        BOOST_TEST(p.predicted_bytes <= budget);
        BOOST_TEST(p.policy.stored > previous_stored);
        BOOST_TEST(p.cheap_steps + p.policy.stored == T);
        previous_stored = p.policy.stored;
        runs_within(budget);
    }
    expect_error([&] { (void)plan(bptt_memory::budget(100000)); },
                 {"bptt memory budget", "100000 bytes", "below the least", "400 steps", "every:"});
}

/// How many times tanh_counting_op's forward has run.
inline std::size_t counted_forwards = 0;

/// tanh, counting its forward runs: a recomputed value runs its op's forward again.
struct tanh_counting_op
{
    static constexpr const char* name = "tanh_counting";
    static constexpr unsigned backward_reads = 0b10; ///< y only
    tensor forward(const tensor& x) const
    {
        ++counted_forwards;
        return tanh_op{}.forward(x);
    }
    void backward(const tensor& x, const tensor& y, const tensor& gy, tensor& gx) const
    {
        tanh_op{}.backward(x, y, gy, gx);
    }
};

/// h' = 1 · tanh(x Wᵀ + h Uᵀ + b): the state is a copy, so a kept state does not keep the tanh
/// its backward reads, which every step of a dropped segment recomputes.
struct counting_cell
{
    using state = var;
    param w, u, b;
    var operator()(tape& t, const var& x, const var& h) const
    {
        const var a = apply(tanh_counting_op{},
                            matmul_transposed(x, t[w]) + matmul_transposed(h, t[u]) + t[b]);
        return a * real(1);
    }
};

// The steps a plan says backward recomputes are the steps it recomputes: each segment but the
// last, and the last too when stored steps follow it, whole or keeping its GEMM outputs.
inline void plans_count_the_recomputed_steps()
{
    constexpr std::size_t B = 2, I = 3, H = 4;
    param_store store;
    generator g(21);
    const counting_cell cell{store.add("w", g.uniform({H, I}, -0.5, 0.5)),
                             store.add("u", g.uniform({H, H}, -0.5, 0.5)),
                             store.add("b", g.uniform({H}, -0.5, 0.5))};
    constexpr std::size_t all = bptt_memory::every_step;
    for (const auto& [T, K, F, G] : std::vector<std::array<std::size_t, 4>>{{48, 8, 0, 0},
                                                                            {50, 8, 0, 0},
                                                                            {50, 8, 5, 0},
                                                                            {50, 7, 3, 0},
                                                                            {10, 20, 0, 0},
                                                                            {30, 1, 0, 0},
                                                                            {30, 4, 30, 0},
                                                                            {50, 8, 0, all},
                                                                            {50, 7, 3, 20},
                                                                            {50, 8, 5, all},
                                                                            {48, 8, 0, 9}})
    {
        const bptt_memory m = bptt_memory::every(K, F, G);
        const bptt_plan plan = plan_unroll(cell, T, B, I, H, m, true);
        const tensor x = g.uniform({T, B, I}, -1, 1);
        counted_forwards = 0;
        run(store, [&](tape& t) {
            unroll_options o;
            o.memory = m;
            return weighted_loss(unroll(cell, t, t.constant(x), zero_state<var>(t, B, H), o));
        });
        // The counting tanh is cheap: steps that keep their GEMM outputs recompute it too.
        BOOST_TEST(counted_forwards - T == plan.recomputed_steps + plan.cheap_steps, plan.str());
    }
}

// Backward frees what a policy kept as it passes it, but not its output (the loss, recorded
// inside the steps) and not the final state, which truncated BPTT carries into the next chunk:
// reading them after backward recomputes nothing, while reading a freed value inside the
// sequence recomputes it, equal to the first.
inline void the_final_state_outlives_backward()
{
    constexpr std::size_t T = 20, B = 2, I = 3, H = 4;
    param_store store;
    generator g(22);
    const counting_cell cell{store.add("w", g.uniform({H, I}, -0.5, 0.5)),
                             store.add("u", g.uniform({H, H}, -0.5, 0.5)),
                             store.add("b", g.uniform({H}, -0.5, 0.5))};
    const tensor x = g.uniform({T, B, I}, -1, 1);
    tensor reference;
    for (const bptt_memory& m : {bptt_memory::all(), bptt_memory::every(20), bptt_memory::every(8),
                                 bptt_memory::parse("every:4,gemm"), bptt_memory::every(5, 6)})
    {
        tape t;
        unroll_options o;
        o.memory = m;
        var loss;
        const auto states = unroll(
            cell, t, t.constant(x), zero_state<var>(t, B, H), o,
            [&](std::size_t, const var& h) { loss = loss.defined() ? loss + sum(h) : sum(h); });
        t.backward(loss);
        const std::size_t before = counted_forwards;
        (void)loss.item(); // backward's output is kept for its caller
        BOOST_TEST(counted_forwards == before, m.str());
        const tensor final_state = states.back().value();
        BOOST_TEST(counted_forwards == before, m.str());
        const tensor inside = states[T / 2].value(); // freed by backward under a policy
        BOOST_TEST((counted_forwards > before) == m.recomputes(), m.str());
        if (!m.recomputes())
            reference = inside;
        BOOST_TEST(identical(inside, reference), m.str());
        (void)final_state;
    }
}

inline void policies_are_parsed_and_named()
{
    using unfold::testing::expect_error;
    BOOST_TEST(bptt_memory::parse("all").str() == "all");
    BOOST_TEST(bptt_memory::parse("gemm").str() == "gemm");
    BOOST_TEST(bptt_memory::parse("every:32").steps == 32u);
    BOOST_TEST(bptt_memory::parse("every:32").str() == "every:32");
    for (const char* bad : {"every:0", "every:", "every:-3", "every:4x"})
        expect_error([&] { (void)bptt_memory::parse(bad); }, {"--bptt-memory", bad, "K >= 1"});
    expect_error([&] { (void)bptt_memory::parse("most"); },
                 {"--bptt-memory 'most'", "all, every:K", "gemm", "256M"});
    BOOST_TEST(bptt_memory::parse("every:8,stored:100").stored == 100u);
    BOOST_TEST(bptt_memory::parse("every:8,stored:100").str() == "every:8,stored:100");
    BOOST_TEST(bptt_memory::parse("every:8,gemm").cheap == bptt_memory::every_step);
    BOOST_TEST(bptt_memory::parse("every:8,gemm:40").cheap == 40u);
    for (const char* text : {"every:8,gemm", "every:8,gemm:40", "every:8,gemm,stored:100",
                             "every:8,gemm:40,stored:100"})
        BOOST_TEST(bptt_memory::parse(text).str() == text);
    BOOST_TEST(bptt_memory::parse("every:8,stored:100,gemm:40").str() ==
               "every:8,gemm:40,stored:100");
    expect_error([&] { (void)bptt_memory::parse("every:8,gemm:x"); },
                 {"every:8,gemm:x", "gemm:G needs a whole number"});
    expect_error([&] { (void)bptt_memory::parse("every:8,often"); },
                 {"every:8,often", ",gemm", ",stored:F", "not 'often'"});
    BOOST_TEST(bptt_memory::parse("256M").bytes == std::size_t(256) << 20);
    BOOST_TEST(bptt_memory::parse("256M").str() == "256M");
    BOOST_TEST(bptt_memory::parse("2G").bytes == std::size_t(2) << 30);
    BOOST_TEST(bptt_memory::parse("1500K").bytes == std::size_t(1500) << 10);
    BOOST_TEST(bptt_memory::parse("123456").bytes == 123456u);
    for (const char* bad : {"12X", "M", "-5M", "1.5G"})
        expect_error([&] { (void)bptt_memory::parse(bad); }, {"--bptt-memory", bad, "256M"});
    expect_error([&] { (void)bptt_memory::parse("0M"); }, {"0M", "positive number of bytes"});
}

} // namespace bptt_memory_cases

BOOST_AUTO_TEST_SUITE(bptt_memory_policies)
BOOST_AUTO_TEST_CASE(cells_give_identical_gradients)
{
    bptt_memory_cases::cells_give_identical_gradients();
}
BOOST_AUTO_TEST_CASE(projection_chunks_give_identical_gradients)
{
    bptt_memory_cases::projection_chunks_give_identical_gradients();
}
BOOST_AUTO_TEST_CASE(a_sequence_given_by_chunks_gives_identical_gradients)
{
    bptt_memory_cases::a_sequence_given_by_chunks_gives_identical_gradients();
}
BOOST_AUTO_TEST_CASE(truncated_bptt_gives_identical_gradients)
{
    bptt_memory_cases::truncated_bptt_gives_identical_gradients();
}
BOOST_AUTO_TEST_CASE(an_op_that_draws_is_kept) { bptt_memory_cases::an_op_that_draws_is_kept(); }
BOOST_AUTO_TEST_CASE(a_bidirectional_masked_stack_gives_identical_gradients)
{
    bptt_memory_cases::a_bidirectional_masked_stack_gives_identical_gradients();
}
BOOST_AUTO_TEST_CASE(the_decoder_gives_identical_gradients)
{
    bptt_memory_cases::the_decoder_gives_identical_gradients();
}
BOOST_AUTO_TEST_CASE(policies_keep_less) { bptt_memory_cases::policies_keep_less(); }
BOOST_AUTO_TEST_CASE(dropped_values_are_recomputed_when_read)
{
    bptt_memory_cases::dropped_values_are_recomputed_when_read();
}
BOOST_AUTO_TEST_CASE(plans_predict_the_peak) { bptt_memory_cases::plans_predict_the_peak(); }
BOOST_AUTO_TEST_CASE(budgets_pick_the_cheapest_policy_that_fits)
{
    bptt_memory_cases::budgets_pick_the_cheapest_policy_that_fits();
}
BOOST_AUTO_TEST_CASE(the_final_state_outlives_backward)
{
    bptt_memory_cases::the_final_state_outlives_backward();
}
BOOST_AUTO_TEST_CASE(plans_count_the_recomputed_steps)
{
    bptt_memory_cases::plans_count_the_recomputed_steps();
}
BOOST_AUTO_TEST_CASE(policies_are_parsed_and_named)
{
    bptt_memory_cases::policies_are_parsed_and_named();
}
BOOST_AUTO_TEST_SUITE_END()
