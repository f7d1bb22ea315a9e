// Attention (models/attention.hpp) and the encoder–decoder (models/seq2seq.hpp): attention's
// weights and context against their formulas written out by hand, the decoder under the feeding
// policies, beam search against greedy decoding and against an exhaustive search, and the errors
// for inputs that do not fit. Gradients are checked in double in models_tests_f64.cpp; the additive
// score against PyTorch in parity_tests.cpp.
#include <cmath>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/models/attention.hpp>
#include <unfold/models/batching.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/seq2seq.hpp>

using namespace unfold;
using unfold::testing::expect_error;

namespace
{
constexpr std::size_t S = 4, B = 3, E = 5, Q = 2, A = 3;

/// The weights and context of one query row b, computed element by element from the formulas.
struct by_hand
{
    std::vector<double> weights;
    std::vector<double> context;
};

by_hand attend_by_hand(attention_kind kind, const param_store& store, const tensor& m,
                       const tensor& q, std::size_t b, std::size_t length)
{
    std::vector<double> e(length);
    for (std::size_t s = 0; s < length; ++s)
    {
        double score = 0;
        if (kind == attention_kind::additive)
        {
            const tensor wk = store.get("attn.key.weight").value(),
                         bk = store.get("attn.key.bias").value(),
                         wq = store.get("attn.query.weight").value(),
                         v = store.get("attn.score.weight").value();
            for (std::size_t a = 0; a < A; ++a)
            {
                double z = bk(a);
                for (std::size_t i = 0; i < E; ++i)
                    z += wk(a, i) * m(s, b, i);
                for (std::size_t j = 0; j < Q; ++j)
                    z += wq(a, j) * q(b, j);
                score += v(0, a) * std::tanh(z);
            }
        }
        else
        {
            const tensor w = store.get("attn.weight").value();
            for (std::size_t i = 0; i < E; ++i)
                for (std::size_t j = 0; j < Q; ++j)
                    score += m(s, b, i) * w(i, j) * q(b, j);
        }
        e[s] = score;
    }
    by_hand out{std::vector<double>(S, 0.0), std::vector<double>(E, 0.0)};
    double total = 0;
    for (double x : e)
        total += std::exp(x);
    for (std::size_t s = 0; s < length; ++s)
    {
        out.weights[s] = std::exp(e[s]) / total;
        for (std::size_t i = 0; i < E; ++i)
            out.context[i] += out.weights[s] * m(s, b, i);
    }
    return out;
}

/// A small LSTM encoder–decoder over token ids [0, V): 0 starts a target, 1 ends it.
struct small_model
{
    param_store store;
    seq2seq<lstm_cell> model;
    small_model(std::optional<attention_kind> kind, std::uint64_t seed, std::size_t V = 6)
        : model(build(store, kind, seed, V))
    {}
    static seq2seq<lstm_cell> build(param_store& store, std::optional<attention_kind> kind,
                                    std::uint64_t seed, std::size_t V)
    {
        generator g(seed);
        seq2seq_options o;
        o.source_vocab = o.target_vocab = V;
        o.embed = 4;
        o.hidden = 5;
        o.attend = kind;
        o.attention_size = 3;
        return make_seq2seq(store, o, g, [&](param_store& s, std::size_t in, layer_options lo) {
            return lstm_layer(s, in, 5, g, lo);
        });
    }
};

/// One sequence's target batch: fed <s> = 0 then `answer`, which it must write followed by 1.
token_batch batch_of(const std::vector<std::size_t>& source, const std::vector<std::size_t>& answer)
{
    token_batch b;
    b.batch = 1;
    b.steps = answer.size() + 1;
    b.inputs.push_back(0);
    b.inputs.insert(b.inputs.end(), answer.begin(), answer.end());
    for (std::size_t a : answer)
        b.targets.push_back(std::int64_t(a));
    b.targets.push_back(1);
    b.source = {source.size(), 1, source, {source.size()}};
    return b;
}

/// log p(answer </s> | source) under teacher forcing.
double log_prob_of(const seq2seq<lstm_cell>& m, const std::vector<std::size_t>& source,
                   const std::vector<std::size_t>& answer)
{
    no_grad_guard no_grad;
    tape t;
    teacher_forcing teacher;
    const token_batch b = batch_of(source, answer);
    const auto r = m.run(t, b, teacher);
    double total = 0;
    for (std::size_t k = 0; k < b.steps; ++k)
    {
        const tensor& x = r.logits[k].value();
        double z = 0;
        for (std::size_t v = 0; v < x.shape()[1]; ++v)
            z += std::exp(double(x(0, v)));
        total += double(x(0, std::size_t(b.targets[k]))) - std::log(z);
    }
    return total;
}
} // namespace

BOOST_AUTO_TEST_SUITE(attention_weights)

BOOST_AUTO_TEST_CASE(additive_and_multiplicative_weights_and_contexts_match_their_formulas)
{
    for (attention_kind kind : {attention_kind::additive, attention_kind::multiplicative})
    {
        param_store store;
        generator g(3);
        const attention a = attention::create(store, kind, E, Q, A, g);
        BOOST_TEST(store.size() == (kind == attention_kind::additive ? 4u : 1u));
        const tensor m = g.uniform({S, B, E}, -1, 1), q = g.uniform({B, Q}, -2, 2);
        const std::vector<std::size_t> lengths{4, 2, 1};
        tape t;
        const attention_memory memory = a.remember(t, t.constant(m), lengths);
        const attention_step out = a(t, memory, t.constant(q));
        BOOST_TEST(out.weights.shape() == shape_type({B, S}));
        BOOST_TEST(out.context.shape() == shape_type({B, E}));
        for (std::size_t b = 0; b < B; ++b)
        {
            const by_hand expected = attend_by_hand(kind, store, m, q, b, lengths[b]);
            for (std::size_t s = 0; s < S; ++s)
                BOOST_TEST(out.weights.value()(b, s) == expected.weights[s],
                           boost::test_tools::tolerance(1e-5));
            for (std::size_t i = 0; i < E; ++i)
                BOOST_TEST(out.context.value()(b, i) == expected.context[i],
                           boost::test_tools::tolerance(1e-5));
            for (std::size_t s = lengths[b]; s < S; ++s)
                BOOST_TEST(out.weights.value()(b, s) == 0); // exactly: padding gets nothing
        }
        BOOST_TEST(out.weights.value()(2, 0) == 1); // a source of one position
    }
}

BOOST_AUTO_TEST_CASE(memories_masks_and_queries_that_do_not_fit_are_refused)
{
    param_store store;
    generator g(4);
    const attention a = attention::create(store, attention_kind::additive, E, Q, A, g);
    tape t;
    const var m = t.constant(g.uniform({S, B, E}, -1, 1));
    expect_error(
        [&] {
            (void)a.remember_masked(t, m, zeros({S, B}));
        },
        {"a source mask of shape (4, 3)", "memory of shape (4, 3, 5)", "(B, S) = (3, 4)"});
    expect_error(
        [&] {
            (void)a.remember(t, m, std::vector<std::size_t>{4, 2});
        },
        {"2 source lengths", "batch 3"});
    expect_error(
        [&] {
            (void)a.remember(t, m, std::vector<std::size_t>{4, 0, 1});
        },
        {"source 1 has length 0", "[1, 4]"});
    expect_error(
        [&] {
            (void)a.remember(t, t.constant(zeros({S, B, 6})));
        },
        {"memory of shape (4, 3, 6)", "E = 5"});
    const attention_memory memory = a.remember(t, m);
    expect_error(
        [&] {
            (void)a(t, memory, t.constant(zeros({2, Q})));
        },
        {"query of shape (2, 2)", "(B, Q) = (3, 2)"});
    expect_error([&] { (void)attention::create(store, attention_kind::additive, E, Q, 0, g); },
                 {"attention size 0"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(encoder_decoder)

BOOST_AUTO_TEST_CASE(parameters_are_named_by_part_and_sized_for_the_attention)
{
    small_model with(attention_kind::additive, 1);
    // a bidirectional encoder of H = 5: memory 10; the decoder reads embed 4 + context 10
    BOOST_TEST(with.model.memory_size() == 10u);
    BOOST_TEST(with.store.get("source_embed.weight").shape() == shape_type({6, 4}));
    BOOST_TEST(with.store.get("encoder.weight_ih_l0_reverse").shape() == shape_type({20, 4}));
    BOOST_TEST(with.store.get("decoder.weight_ih_l0").shape() == shape_type({20, 14}));
    BOOST_TEST(with.store.get("bridge.weight").shape() == shape_type({10, 10})); // h0 and c0
    BOOST_TEST(with.store.get("attn.key.weight").shape() == shape_type({3, 10}));
    BOOST_TEST(with.store.get("head.weight").shape() == shape_type({6, 15}));
    small_model without(std::nullopt, 1);
    BOOST_TEST(without.store.get("decoder.weight_ih_l0").shape() == shape_type({20, 4}));
    BOOST_TEST(without.store.get("head.weight").shape() == shape_type({6, 5}));
    BOOST_TEST(!without.store.contains("attn.key.weight"));
}

BOOST_AUTO_TEST_CASE(a_run_records_a_step_per_target_and_attends_only_within_each_source)
{
    small_model m(attention_kind::multiplicative, 2);
    vocabulary v({"a", "b", "c"});
    const std::vector<example> examples{{"abc", "cba"}, {"a", "a"}, {"", "b"}};
    const token_batch b = make_seq2seq_batch(v, examples);
    BOOST_TEST(b.source.steps == 4u); // "abc" + </s>
    BOOST_TEST((b.source.lengths == std::vector<std::size_t>{4, 2, 1}));
    BOOST_TEST(b.steps == 4u); // <s> c b a, writing c b a </s>
    BOOST_TEST(b.input(0, 1) == vocabulary::bos);
    BOOST_TEST(b.target(1, 1) == std::int64_t(vocabulary::eos));
    BOOST_TEST(b.target(2, 1) == token_batch::ignore_index);
    tape t;
    teacher_forcing teacher;
    const auto r = m.model.run(t, b, teacher);
    BOOST_TEST(r.logits.size() == 4u);
    BOOST_TEST(r.weights.size() == 4u);
    for (const var& w : r.weights)
    {
        BOOST_TEST(w.shape() == shape_type({3, 4}));
        BOOST_TEST(w.value()(1, 2) == 0);
        BOOST_TEST(w.value()(2, 1) == 0);
        BOOST_TEST(w.value()(2, 0) == 1);
    }
    const var loss = sequence_loss(r, b);
    BOOST_TEST(std::isfinite(loss.item()));
    t.backward(loss);
    for (const param& p : m.store)
        BOOST_TEST(xt::amax(xt::abs(p.grad()))() > 0, p.name() << " got no gradient");
}

BOOST_AUTO_TEST_CASE(beam_width_one_writes_what_greedy_free_running_writes)
{
    for (auto kind :
         {std::optional<attention_kind>(attention_kind::additive), std::optional<attention_kind>()})
    {
        small_model m(kind, 5);
        const std::vector<std::size_t> source{2, 3, 4, 5, 3};
        beam_options o;
        o.width = 1;
        o.max_length = 6;
        const std::vector<hypothesis> beam = m.model.beam_search(source, 0, 1, o);
        BOOST_TEST_REQUIRE(beam.size() == 1u);
        // The run path: free running over a target of max_length counted steps.
        token_batch b = batch_of(source, std::vector<std::size_t>(o.max_length - 1, 3));
        no_grad_guard no_grad;
        tape t;
        free_running greedy;
        const auto r = m.model.run(t, b, greedy);
        std::vector<std::size_t> written;
        double log_prob = 0;
        for (std::size_t k = 0; k < b.steps; ++k)
        {
            const std::size_t token = choose_tokens(r.logits[k].value(), token_choice::greedy)[0];
            written.push_back(token);
            const tensor& x = r.logits[k].value();
            double z = 0;
            for (std::size_t v = 0; v < x.shape()[1]; ++v)
                z += std::exp(double(x(0, v)));
            log_prob += double(x(0, token)) - std::log(z);
            if (token == 1)
                break;
        }
        BOOST_TEST(beam[0].tokens == written, boost::test_tools::per_element());
        BOOST_TEST(beam[0].log_prob == log_prob, boost::test_tools::tolerance(1e-4));
        BOOST_TEST(beam[0].ended == (written.back() == 1));
        BOOST_TEST(beam[0].weights.size() == (kind ? written.size() : 0u));
    }
}

BOOST_AUTO_TEST_CASE(a_beam_wider_than_every_hypothesis_finds_the_exhaustive_best)
{
    // Over 4 tokens, of which 1 ends: with max_length 3 there are 1 + 3 + 9 ended answers and at
    // most 9 live ones, fewer than the width, so the search is exact.
    small_model m(attention_kind::additive, 8, 4);
    const std::vector<std::size_t> source{2, 3, 3};
    for (double alpha : {0.0, 1.0})
    {
        beam_options o;
        o.width = 40;
        o.max_length = 3;
        o.length_penalty = alpha;
        const std::vector<hypothesis> beam = m.model.beam_search(source, 0, 1, o);
        double best = -1e30;
        std::vector<std::size_t> best_answer;
        // Every answer over the tokens {0, 2, 3} of length 0-2 (only the token 1 ends).
        std::vector<std::vector<std::size_t>> all{{}};
        for (std::size_t len = 1; len <= 2; ++len)
        {
            std::vector<std::vector<std::size_t>> longer;
            for (const auto& a : all)
                if (a.size() == len - 1)
                    for (std::size_t v : {0, 2, 3})
                    {
                        auto b = a;
                        b.push_back(v);
                        longer.push_back(b);
                    }
            all.insert(all.end(), longer.begin(), longer.end());
        }
        BOOST_TEST(all.size() == 13u);
        for (const auto& a : all)
        {
            const double lp = log_prob_of(m.model, source, a);
            const double score = lp / std::pow(double(a.size() + 1), alpha);
            if (score > best)
            {
                best = score;
                best_answer = a;
            }
        }
        BOOST_TEST_REQUIRE(!beam.empty());
        BOOST_TEST(beam.size() == all.size());
        best_answer.push_back(1);
        BOOST_TEST(beam[0].tokens == best_answer, boost::test_tools::per_element());
        BOOST_TEST(beam[0].score == best, boost::test_tools::tolerance(1e-4));
        for (std::size_t i = 1; i < beam.size(); ++i)
            BOOST_TEST(beam[i - 1].score >= beam[i].score);
    }
}

BOOST_AUTO_TEST_CASE(bad_widths_batches_and_sizes_are_refused)
{
    small_model m(attention_kind::additive, 9);
    beam_options o;
    o.width = 0;
    expect_error(
        [&] {
            (void)m.model.beam_search({2, 3}, 0, 1, o);
        },
        {"beam_search", "beam width of 0", "at least 1"});
    expect_error([&] { (void)m.model.beam_search({}, 0, 1); }, {"the source is empty"});
    tape t;
    teacher_forcing teacher;
    token_batch b = batch_of({2, 3}, {3});
    b.source = {};
    expect_error([&] { (void)m.model.run(t, b, teacher); },
                 {"target batch of 1 sequences with a source batch of 0", "make_seq2seq_batch"});
    b = batch_of({2, 3}, {3});
    b.source.lengths = {3};
    expect_error([&] { (void)m.model.run(t, b, teacher); }, {"source 0 has length 3", "[1, 2]"});

    // A decoder given an encoder–decoder's batch would never see the prompt.
    param_store store;
    generator g(10);
    auto d =
        make_decoder(store, 6, 4, 5, 1, g, [&](param_store& s, std::size_t in, layer_options lo) {
            return lstm_layer(s, in, 5, g, lo);
        });
    expect_error(
        [&] {
            (void)d.run(t, batch_of({2, 3}, {3}), teacher);
        },
        {"decoder: the batch has a source sequence", "make_batch"});

    // Parts that do not fit: a decoder reading 4 features where embeddings and context give 14.
    param_store parts;
    layer_options enc, dec, wide;
    enc.bidirectional = true;
    enc.prefix = "encoder.";
    dec.prefix = "decoder.";
    wide.prefix = "wide.";
    auto encoder = lstm_layer(parts, 4, 5, g, enc);
    auto decoder = lstm_layer(parts, 4, 5, g, dec);
    // The other parts in a store of their own, attention over `memory` features.
    auto assemble = [&](const layer<lstm_cell>& d, std::size_t memory) {
        param_store own;
        return seq2seq<lstm_cell>(
            embedding::create(own, 6, 4, g, "source."), encoder,
            linear::create(own, 10, 10, g, "bridge."), embedding::create(own, 6, 4, g, "embed."), d,
            attention::create(own, attention_kind::additive, memory, 5, 3, g, "attn."),
            linear::create(own, 15, 6, g, "head."));
    };
    expect_error([&] { (void)assemble(decoder, 10); },
                 {"the decoder reads 4 features", "embeddings of width 4 and a context of 10"});
    auto wide_decoder = lstm_layer(parts, 14, 5, g, wide);
    expect_error([&] { (void)assemble(wide_decoder, 8); },
                 {"attention over 8 memory features", "the encoder gives 10"});
    BOOST_TEST(assemble(wide_decoder, 10).memory_size() == 10u);
}

BOOST_AUTO_TEST_SUITE_END()
