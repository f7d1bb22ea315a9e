// Training: the feeding policies (teacher forcing, free running, scheduled sampling), the tasks'
// data, a shortened addition run that must learn, truncated BPTT on text, and the command line's
// exit statuses and checkpoints.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <csignal>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>

#include "apps/cli.hpp"
#include "apps/model.hpp"
#include "apps/tasks.hpp"
#include "apps/train.hpp"
#include "tests/cli_util.hpp"
#include "tests/test_util.hpp"
#include <unfold/models/decoder.hpp>
#include <unfold/models/feeding.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/text.hpp>

using namespace unfold;
using namespace unfold::app;

using unfold::testing::built_program;
using unfold::testing::cli_result;
using unfold::testing::read_and_close;
using unfold::testing::run;

namespace
{
/// A file in the temporary directory, removed at the end of the test.
struct temp_file
{
    std::string path;
    explicit temp_file(const std::string& name, const std::string& contents = {})
        : path((std::filesystem::temp_directory_path() /
                ("unfold-training-" + std::to_string(::getpid()) + "-" + name))
                   .string())
    {
        if (!contents.empty())
            std::ofstream(path, std::ios::binary) << contents;
    }
    ~temp_file() { std::filesystem::remove(path); }
};

/// A small GRU decoder over the addition vocabulary.
struct small_model
{
    param_store store;
    generator g{5};
    decoder<gru_cell> dec;
    explicit small_model(std::size_t vocab)
        : dec(make_decoder(store, vocab, 8, 16, 2, g,
                           [this](param_store& s, std::size_t in, layer_options lo) {
                               return gru_layer(s, in, 16, g, lo);
                           }))
    {}
};

/// Wraps a policy and shows it predictions other than the model's: noise logits, so that any
/// choice made from the model's output differs from the model's own (Note [Fed tokens are data]).
class other_predictions final : public feeding_policy
{
public:
    other_predictions(feeding_policy& inner, std::uint64_t seed)
        : m_inner(&inner)
        , m_g(seed)
    {}
    void begin(std::size_t b, std::size_t step) override { m_inner->begin(b, step); }
    std::vector<std::size_t> choose(const feed_request& r) override
    {
        const tensor noise = m_g.uniform(r.logits.shape(), -10, 10);
        return m_inner->choose({r.step, r.observed, noise, r.choosable});
    }
    std::string name() const override { return "other_predictions"; }

private:
    feeding_policy* m_inner;
    generator m_g;
};
} // namespace

BOOST_AUTO_TEST_SUITE(training)

BOOST_AUTO_TEST_CASE(addition_examples_are_correct_sums_and_held_out_is_disjoint)
{
    const addition_task tk;
    BOOST_TEST(tk.held_out().size() == 1000u);
    std::set<std::string> held;
    for (const auto& e : tk.held_out())
    {
        BOOST_TEST(addition_task::valid_sum(e.prompt + e.answer), e.prompt + e.answer);
        held.insert(e.prompt);
    }
    BOOST_TEST(held.size() == 1000u);
    generator g(3);
    std::size_t three_digit_sums = 0;
    for (int i = 0; i < 2000; ++i)
    {
        const example e = tk.draw(g);
        BOOST_TEST(addition_task::valid_sum(e.prompt + e.answer), e.prompt + e.answer);
        BOOST_TEST(held.count(e.prompt) == 0u, e.prompt << " is held out");
        three_digit_sums += e.answer.size() == 3;
    }
    // P(a + b ≥ 100) = 4950/10000 for two-digit operands.
    BOOST_TEST(three_digit_sums > 850u);
    BOOST_TEST(three_digit_sums < 1130u);
    // The checker itself rejects wrong sums and malformed strings.
    BOOST_TEST(addition_task::valid_sum("37+85=122"));
    BOOST_TEST(!addition_task::valid_sum("37+85=123"));
    BOOST_TEST(!addition_task::valid_sum("37+85="));
    BOOST_TEST(!addition_task::valid_sum("37+=37"));
    BOOST_TEST(!addition_task::valid_sum("07+1=8"));
}

BOOST_AUTO_TEST_CASE(batches_feed_the_prompt_and_count_only_the_answer)
{
    const addition_task tk;
    const vocabulary& v = tk.vocab();
    const token_batch b = make_batch(v, {{"37+85=", "122"}, {"1+2=", "3"}});
    BOOST_TEST(b.steps == 10u); // <s> 3 7 + 8 5 = 1 2 2 </s>: 11 tokens, 10 steps
    BOOST_TEST(b.batch == 2u);
    const std::string fed = "37+85=122";
    BOOST_TEST(b.input(0, 0) == vocabulary::bos);
    for (std::size_t k = 0; k < fed.size(); ++k)
        BOOST_TEST(b.input(k + 1, 0) == v.id(std::string(1, fed[k])));
    for (std::size_t k = 0; k < 6; ++k)
        BOOST_TEST(b.target(k, 0) == token_batch::ignore_index);
    BOOST_TEST(b.target(6, 0) == std::int64_t(v.id("1")));
    BOOST_TEST(b.target(7, 0) == std::int64_t(v.id("2")));
    BOOST_TEST(b.target(8, 0) == std::int64_t(v.id("2")));
    BOOST_TEST(b.target(9, 0) == std::int64_t(vocabulary::eos));
    // The short sequence: counted targets "3", </s> at steps 4, 5, then padding.
    BOOST_TEST(b.target(3, 1) == token_batch::ignore_index);
    BOOST_TEST(b.target(4, 1) == std::int64_t(v.id("3")));
    BOOST_TEST(b.target(5, 1) == std::int64_t(vocabulary::eos));
    for (std::size_t k = 6; k < 10; ++k)
    {
        BOOST_TEST(b.target(k, 1) == token_batch::ignore_index);
        BOOST_TEST(b.input(k, 1) == vocabulary::pad);
    }
}

BOOST_AUTO_TEST_CASE(copy_targets_equal_the_inputs)
{
    const copy_task tk;
    generator g(4);
    for (int i = 0; i < 300; ++i)
    {
        const example e = tk.draw(g);
        BOOST_TEST_REQUIRE(e.prompt.size() == e.answer.size() + 1);
        BOOST_TEST(e.prompt.back() == '|');
        BOOST_TEST(e.prompt.substr(0, e.answer.size()) == e.answer);
        BOOST_TEST(e.answer.find_first_not_of("abcdef") == std::string::npos);
        // In the batch, the counted targets are the symbols read before the delimiter.
        const token_batch b = make_batch(tk.vocab(), {e});
        std::vector<std::size_t> copied;
        for (std::size_t k = 0; k < b.steps; ++k)
            if (b.target(k, 0) != token_batch::ignore_index)
                copied.push_back(std::size_t(b.target(k, 0)));
        BOOST_TEST_REQUIRE(copied.size() == e.answer.size() + 1);
        for (std::size_t k = 0; k < e.answer.size(); ++k)
            BOOST_TEST(copied[k] == b.input(k + 1, 0));
        BOOST_TEST(copied.back() == vocabulary::eos);
    }
}

BOOST_AUTO_TEST_CASE(reber_strings_are_accepted_by_the_grammar)
{
    generator g(6);
    std::set<std::string> distinct;
    for (int i = 0; i < 500; ++i)
    {
        const std::string s = reber_grammar::generate(g);
        BOOST_TEST(reber_grammar::accepts(s), s);
        distinct.insert(s);
        // The long-range dependency: the second symbol is repeated before the final E.
        BOOST_TEST(s[1] == s[s.size() - 2]);
        std::string wrong = s;
        wrong[wrong.size() - 2] = s[1] == 'T' ? 'P' : 'T';
        BOOST_TEST(!reber_grammar::accepts(wrong), wrong);
    }
    BOOST_TEST(distinct.size() > 50u);
    BOOST_TEST(reber_grammar::accepts("BTBTSSXXTVVETE"));
    BOOST_TEST(reber_grammar::accepts("BPBPVVEPE"));
    BOOST_TEST(!reber_grammar::accepts("BTBPVVEPE"));     // inner string fine, branch mismatch
    BOOST_TEST(!reber_grammar::accepts("BTBTSSXXTVVET")); // unfinished
    BOOST_TEST(!reber_grammar::accepts("BTBTXETE"));      // E cannot follow X
    // Legal successors along a prefix.
    reber_grammar::position p;
    BOOST_TEST(reber_grammar::successors(p) == "B");
    for (char c : std::string("BTBP"))
        p = *reber_grammar::advance(p, c);
    BOOST_TEST(reber_grammar::successors(p) == "TV");
    for (char c : std::string("VVE"))
        p = *reber_grammar::advance(p, c);
    BOOST_TEST(reber_grammar::successors(p) == "T"); // the branch taken at the start
}

BOOST_AUTO_TEST_CASE(teacher_forced_loss_at_step_t_ignores_earlier_predictions)
{
    const addition_task tk;
    small_model m(tk.vocab().size());
    generator g(8);
    std::vector<example> ex;
    for (int i = 0; i < 16; ++i)
        ex.push_back(tk.draw(g));
    const token_batch b = make_batch(tk.vocab(), ex);
    const std::size_t last = b.steps - 1;

    // Teacher forcing: the model's predictions replaced by noise change nothing at all. Both run
    // step by step: a policy that says it feeds the observed tokens runs the whole sequence at
    // once (Note [Whole-sequence decoding]), which never asks it, so this one does not say so.
    feeding_function teacher([](const feed_request& r) { return r.observed; }, "observed");
    other_predictions teacher_other(teacher, 11);
    tape t1, t2;
    const auto own = m.dec.run(t1, b, teacher);
    const auto other = m.dec.run(t2, b, teacher_other);
    BOOST_TEST(!own.sequence_logits.defined());
    for (std::size_t k = 0; k < b.steps; ++k)
    {
        BOOST_TEST(own.fed[k] == b.inputs_at(k));
        BOOST_TEST(other.fed[k] == b.inputs_at(k));
        const real a = step_loss(own, b, k).item(), c = step_loss(other, b, k).item();
        BOOST_TEST(std::memcmp(&a, &c, sizeof(real)) == 0,
                   "step " << k << ": " << a << " vs " << c);
    }

    // Free running: different earlier predictions feed different tokens, and change the loss.
    free_running greedy;
    other_predictions free_other(greedy, 11);
    tape t3, t4;
    const auto free_own = m.dec.run(t3, b, greedy);
    const auto free_alt = m.dec.run(t4, b, free_other);
    BOOST_TEST(free_own.fed[last] != free_alt.fed[last]);
    BOOST_TEST(step_loss(free_own, b, last).item() != step_loss(free_alt, b, last).item());
    // The tokens it fed are the model's own argmax wherever the previous target counted.
    for (std::size_t k = 1; k < b.steps; ++k)
    {
        const auto argmax = choose_tokens(free_own.logits[k - 1].value(), token_choice::greedy);
        for (std::size_t s = 0; s < b.batch; ++s)
            BOOST_TEST(
                free_own.fed[k][s] ==
                (b.target(k - 1, s) != token_batch::ignore_index ? argmax[s] : b.input(k, s)));
    }
    // Nothing flows back through a fed token (Note [Fed tokens are data]): the gradient of the
    // last step's loss with respect to the previous step's logits is zero under both policies.
    free_own.logits[last - 1].retain_grad();
    free_own.logits[last].retain_grad();
    t3.backward(step_loss(free_own, b, last));
    BOOST_TEST(xt::amax(xt::abs(free_own.logits[last - 1].grad()))() == real(0));
    BOOST_TEST(xt::amax(xt::abs(free_own.logits[last].grad()))() > real(0));
}

BOOST_AUTO_TEST_CASE(teacher_forcing_decodes_the_whole_sequence_at_once_with_the_same_results)
{
    // Note [Whole-sequence decoding]: under teacher forcing the decoder runs layer by layer, with
    // the same logits, loss and gradients as step by step (up to float round-off: the GEMMs group
    // their sums differently), recurrent dropout's masks included; the LSTM projects its input.
    const addition_task tk;
    param_store store;
    generator g(5);
    decoder<lstm_cell> d = make_decoder(store, tk.vocab().size(), 8, 16, 2, g,
                                        [&](param_store& s, std::size_t in, layer_options lo) {
                                            return lstm_layer(s, in, 16, g, lo);
                                        });
    d.set_recurrent_dropout(real(0.3));
    std::vector<example> ex;
    for (int i = 0; i < 12; ++i)
        ex.push_back(tk.draw(g));
    const token_batch b = make_batch(tk.vocab(), ex);
    auto run = [&](feeding_policy& policy) {
        generator masks(9);
        d.train(masks);
        for (param p : store)
            p.zero_grad();
        tape t;
        const auto r = d.run(t, b, policy);
        const var loss = sequence_loss(r, b);
        t.backward(loss);
        std::vector<tensor> out{loss.value(), stack(r.logits).value(),
                                hidden(r.final_state[1]).value()};
        for (param p : store)
            out.push_back(p.grad());
        return std::pair(out, r.sequence_logits.defined());
    };
    teacher_forcing teacher;
    feeding_function observed([](const feed_request& r) { return r.observed; }, "observed");
    const auto [whole, at_once] = run(teacher);
    const auto [stepped, stepwise_at_once] = run(observed);
    BOOST_TEST(at_once);
    BOOST_TEST(!stepwise_at_once);
    BOOST_TEST_REQUIRE(whole.size() == stepped.size());
    BOOST_TEST(whole[0].data()[0] > 1.0); // a real loss, not a zero
    for (std::size_t k = 0; k < whole.size(); ++k)
    {
        const double scale = std::max(1.0, double(xt::amax(xt::abs(stepped[k]))()));
        BOOST_TEST(testing::max_abs_diff(whole[k], stepped[k]) <= 2e-5 * scale,
                   "tensor " << k
                             << " (0 loss, 1 logits, 2 final h, then the parameters' "
                                "gradients in store order) differs by "
                             << testing::max_abs_diff(whole[k], stepped[k]));
    }
}

BOOST_AUTO_TEST_CASE(top_k_sampling_draws_among_the_k_largest_logits_only)
{
    tensor logits = zeros({1, 5});
    const real row[] = {3, real(2.5), 1, -1, 0};
    std::copy(row, row + 5, logits.data());
    generator g(11);
    std::vector<std::size_t> counts(5, 0);
    const int draws = 4000;
    for (int i = 0; i < draws; ++i)
    {
        ++counts[choose_tokens(logits, token_choice::sample, &g, 1.0, 2)[0]];
        BOOST_TEST(choose_tokens(logits, token_choice::sample, &g, 1.0, 1)[0] == 0u);
    }
    BOOST_TEST(counts[2] + counts[3] + counts[4] == 0u);
    // Renormalised over the two kept: p(0) = e^3 / (e^3 + e^2.5).
    const double p0 = 1 / (1 + std::exp(-0.5));
    BOOST_TEST(std::abs(double(counts[0]) / draws - p0) < 4 * std::sqrt(p0 * (1 - p0) / draws));
    // k at least V is no restriction: the same draws as without it.
    generator a(5), b(5);
    for (int i = 0; i < 50; ++i)
        BOOST_TEST(choose_tokens(logits, token_choice::sample, &a, 0.7, 9)[0] ==
                   choose_tokens(logits, token_choice::sample, &b, 0.7)[0]);
    // Ties with the k-th largest are kept.
    tensor tied = zeros({1, 4});
    tied.data()[0] = tied.data()[1] = tied.data()[2] = 1;
    tied.data()[3] = 0;
    std::set<std::size_t> seen;
    for (int i = 0; i < 300; ++i)
        seen.insert(choose_tokens(tied, token_choice::sample, &g, 1.0, 2)[0]);
    BOOST_TEST((seen == std::set<std::size_t>{0, 1, 2}));
}

BOOST_AUTO_TEST_CASE(scheduled_sampling_rate_follows_its_schedule)
{
    // The realised teacher-forcing rate over n independent coin tosses with probability ε is
    // Binomial(n, ε)/n, with standard deviation σ = √(ε(1 − ε)/n). We accept |rate − ε| ≤ 4σ
    // (+ 1/n for the discreteness at ε near 0 or 1): a correct policy fails a given check with
    // probability < 7·10⁻⁵, and the seeds are fixed, so the test is deterministic anyway.
    // A policy that ignored the schedule, e.g. stuck at ε = 1/2, would miss by > 40σ.
    const std::size_t batch = 500, steps = 8, n = batch * (steps - 1);
    const tensor logits = zeros({batch, 5}); // argmax = 0 everywhere
    std::vector<std::size_t> observed(batch, 3);
    std::vector<bool> open(batch, true);
    struct check_case
    {
        std::string name;
        teacher_schedule schedule;
    };
    const std::vector<check_case> cases = {
        {"linear", teacher_schedules::linear(1, 1.0 / 2000, 0.1)},
        {"exponential", teacher_schedules::exponential(0.999)},
        {"inverse_sigmoid", teacher_schedules::inverse_sigmoid(200)},
    };
    for (const auto& c : cases)
        for (sampling_unit unit : {sampling_unit::token, sampling_unit::sequence})
        {
            generator g(21);
            scheduled_sampling policy(c.schedule, g, unit);
            for (std::size_t i : {0u, 300u, 1000u, 1500u, 3000u})
            {
                const double eps = c.schedule(i);
                policy.begin(batch, i);
                policy.reset_counts();
                BOOST_TEST(policy.probability() == eps);
                std::vector<std::size_t> per_sequence(batch, 0);
                for (std::size_t t = 1; t < steps; ++t)
                {
                    const auto fed = policy.choose({t, observed, logits, open});
                    for (std::size_t b = 0; b < batch; ++b)
                    {
                        BOOST_TEST_REQUIRE((fed[b] == 3 || fed[b] == 0)); // teacher or argmax
                        per_sequence[b] += fed[b] == 3;
                    }
                }
                BOOST_TEST(policy.teacher_fed() + policy.model_fed() == n);
                // Per sequence, the coin is tossed once: a sequence is all teacher or all model,
                // and the rate is over `batch` tosses, not n.
                const double tosses = unit == sampling_unit::token ? double(n) : double(batch);
                if (unit == sampling_unit::sequence)
                    for (std::size_t b = 0; b < batch; ++b)
                        BOOST_TEST((per_sequence[b] == 0 || per_sequence[b] == steps - 1));
                const double rate = double(policy.teacher_fed()) / double(n);
                const double sigma = std::sqrt(eps * (1 - eps) / tosses);
                BOOST_TEST(std::abs(rate - eps) <= 4 * sigma + 1 / tosses,
                           c.name << " step " << i << ": rate " << rate << " vs ε " << eps << " (σ "
                                  << sigma << ")");
            }
        }
    // The schedules' closed forms (Bengio et al. 2015).
    BOOST_TEST(teacher_schedules::linear(1, 0.001, 0.2)(500) == 0.5,
               boost::test_tools::tolerance(1e-12));
    BOOST_TEST(teacher_schedules::linear(1, 0.001, 0.2)(5000) == 0.2);
    BOOST_TEST(teacher_schedules::exponential(0.99)(100) == std::pow(0.99, 100));
    BOOST_TEST(teacher_schedules::inverse_sigmoid(10)(0) == 10.0 / 11.0);
    BOOST_TEST(teacher_schedules::inverse_sigmoid(10)(10 * std::log(10.0)) == 0.5,
               boost::test_tools::tolerance(0.01));
}

BOOST_AUTO_TEST_CASE(scheduled_sampling_in_the_decoder_counts_only_predicted_positions)
{
    const addition_task tk;
    small_model m(tk.vocab().size());
    generator g(9), data(10);
    std::vector<example> ex;
    for (int i = 0; i < 64; ++i)
        ex.push_back(tk.draw(data));
    const token_batch b = make_batch(tk.vocab(), ex);
    std::size_t open_positions = 0; // steps t ≥ 1 whose previous target counts
    for (std::size_t k = 1; k < b.steps; ++k)
        for (std::size_t s = 0; s < b.batch; ++s)
            open_positions += b.target(k - 1, s) != token_batch::ignore_index;
    scheduled_sampling policy(teacher_schedules::constant(0.5), g);
    tape t;
    const auto r = m.dec.run(t, b, policy);
    BOOST_TEST(policy.teacher_fed() + policy.model_fed() == open_positions);
    // Prompts are always fed as observed.
    for (std::size_t k = 1; k < b.steps; ++k)
        for (std::size_t s = 0; s < b.batch; ++s)
            if (b.target(k - 1, s) == token_batch::ignore_index)
                BOOST_TEST(r.fed[k][s] == b.input(k, s));
    const double sigma = std::sqrt(0.25 / double(open_positions));
    BOOST_TEST(std::abs(double(policy.teacher_fed()) / double(open_positions) - 0.5) <= 4 * sigma);
}

BOOST_AUTO_TEST_CASE(layer_normalised_cells_train_and_reload_from_the_command_line)
{
    const addition_task tk;
    for (const std::string cell : {"ln_gru", "ln_lstm"})
    {
        temp_file ckpt(cell + ".safetensors");
        train_options o;
        o.model.cell = cell;
        o.model.hidden = 32;
        o.model.embed = 16;
        o.epochs = 2;
        o.steps = 100;
        o.batch = 32;
        o.lr = 0.01;
        o.quiet = true;
        o.checkpoint = ckpt.path;
        const train_result r = train(o, stdout);
        std::filesystem::remove(best_checkpoint_path(ckpt.path));
        BOOST_TEST_MESSAGE(cell << ": loss " << r.first_loss << " → " << r.last_loss
                                << ", held-out " << r.epochs.back().str());
        BOOST_TEST(r.last_loss < 0.7 * r.first_loss, cell);
        const auto loaded = load_model(ckpt.path);
        BOOST_TEST(loaded->config().cell == cell);
        generator g1(3), g2(3);
        BOOST_TEST(validate(*loaded, &tk, nullptr, g1).str() ==
                       validate(*r.trained, &tk, nullptr, g2).str(),
                   cell);
    }
}

BOOST_AUTO_TEST_CASE(an_lstm_with_a_projection_trains_and_reloads_from_the_command_line)
{
    const addition_task tk;
    temp_file ckpt("lstm_proj.safetensors");
    train_options o;
    o.model.cell = "lstm";
    o.model.hidden = 32;
    o.model.proj_size = 12;
    o.model.embed = 16;
    o.epochs = 2;
    o.steps = 100;
    o.batch = 32;
    o.lr = 0.01;
    o.quiet = true;
    o.checkpoint = ckpt.path;
    const train_result r = train(o, stdout);
    std::filesystem::remove(best_checkpoint_path(ckpt.path));
    BOOST_TEST_MESSAGE("lstm projected to 12: loss " << r.first_loss << " → " << r.last_loss
                                                     << ", held-out " << r.epochs.back().str());
    BOOST_TEST(r.last_loss < 0.7 * r.first_loss);
    BOOST_TEST(r.trained->store().get("rnn.weight_hr_l0").shape() == shape_type({12, 32}));
    BOOST_TEST(r.trained->store().get("rnn.weight_hh_l0").shape() == shape_type({4 * 32, 12}));
    BOOST_TEST(r.trained->store().get("head.weight").shape()[1] == 12u);
    const auto loaded = load_model(ckpt.path);
    BOOST_TEST(loaded->config().proj_size == 12u);
    generator g1(3), g2(3);
    BOOST_TEST(validate(*loaded, &tk, nullptr, g1).str() ==
               validate(*r.trained, &tk, nullptr, g2).str());
}

BOOST_AUTO_TEST_CASE(reversing_digits_an_encoder_decoder_with_attention_beats_one_without)
{
    // The same short run (same seed, batches and sizes) with additive attention and without:
    // reversing up to 15 digits needs every source position at some output step, which attention
    // reads directly and a fixed initial state must hold. Then the attention model is saved,
    // reloaded and decoded with beam search from the command line.
    const reverse_task tk;
    temp_file ckpt("reverse.safetensors");
    auto run = [&](const std::string& attention) {
        train_options o;
        o.model.task = "reverse";
        o.model.architecture = "seq2seq";
        o.model.attention = attention;
        o.model.hidden = 48;
        o.model.embed = 16;
        o.epochs = 1;
        o.steps = 150;
        o.batch = 32;
        o.lr = 0.01;
        o.quiet = true;
        o.checkpoint = ckpt.path;
        o.force = true;
        train_result r = train(o, stdout);
        std::filesystem::remove(best_checkpoint_path(ckpt.path));
        return r;
    };
    const train_result none = run("none");
    const train_result additive = run("additive");
    const double with = metric_value(additive.epochs.back(), "exact_match");
    const double without = metric_value(none.epochs.back(), "exact_match");
    BOOST_TEST_MESSAGE("reverse, 150 steps: exact match " << with << " with attention, " << without
                                                          << " without");
    BOOST_TEST(with > 0.5);
    BOOST_TEST(with > without + 0.25);
    BOOST_TEST(additive.trained->store().contains("attn.score.weight"));
    BOOST_TEST(!none.trained->store().contains("attn.score.weight"));

    const auto loaded = load_model(ckpt.path);
    BOOST_TEST(loaded->config().architecture == "seq2seq");
    BOOST_TEST(loaded->config().attention == "additive");
    const std::vector<example> some(tk.held_out().begin(), tk.held_out().begin() + 200);
    const double greedy = evaluate_answers(*loaded, tk, some).accuracy();
    const double beam = evaluate_beam_answers(*loaded, tk, some, 4);
    BOOST_TEST_MESSAGE("200 held-out: greedy " << greedy << ", beam 4 " << beam);
    // Beam search ranks by mean log-probability, not by correctness: it may trade a right answer
    // for a likelier wrong one (notebook 08), but not more than a few of 200.
    BOOST_TEST(beam >= greedy - 0.02);
    BOOST_TEST(evaluate_beam_answers(*loaded, tk, some, 1) == greedy); // width 1 is greedy

    const cli_result out = unfold::testing::run(
        {"sample", "--checkpoint", ckpt.path, "--prompt", "123456=", "--beam", "3"});
    BOOST_TEST(out.status == 0, out.err);
    BOOST_TEST(std::count(out.out.begin(), out.out.end(), '\n') == 3, out.out);
    BOOST_TEST(out.out.rfind("123456=", 0) == 0u, out.out);
    const cli_result evaluated =
        unfold::testing::run({"eval", "--checkpoint", ckpt.path, "--beam", "2"});
    BOOST_TEST(evaluated.status == 0, evaluated.err);
    BOOST_TEST(evaluated.out.find("beam_exact_match") != std::string::npos, evaluated.out);

    model_config decoder_only = loaded->config();
    decoder_only.architecture = "decoder";
    generator g(1);
    unfold::testing::expect_error(
        [&] {
            (void)make_model(decoder_only, g)->beam_search({vocabulary::bos, 4}, {});
        },
        {"beam search decodes an encoder–decoder's answer", "--model seq2seq"});
}

BOOST_AUTO_TEST_CASE(a_short_addition_run_learns)
{
    // Two-digit addition, 600 steps of 32 sums with a small GRU (about 1.6 s of CPU). Measured
    // (seeds 1, 2, 3): held-out exact match 0.179, 0.177, 0.170 after the third epoch, training
    // loss ≈ 0.76 from ≈ 2 at the start. An untrained model gets next to none of the 1000
    // held-out sums right (each answer is 2-4 tokens out of 15), which the test measures too.
    train_options o;
    o.model.hidden = 64;
    o.model.embed = 16;
    o.epochs = 3;
    o.steps = 200;
    o.batch = 32;
    o.lr = 0.01;
    o.quiet = true;
    const train_result r = train(o, stdout);
    BOOST_TEST_REQUIRE(r.epochs.size() == 3u);

    generator g(1);
    model_config c = o.model;
    const addition_task tk;
    c.vocab = tk.vocab();
    const auto untrained = make_model(c, g);
    const double chance = evaluate_answers(*untrained, tk, tk.held_out()).accuracy();
    BOOST_TEST_MESSAGE("two-digit addition: untrained "
                       << chance << ", exact match by epoch " << r.epochs[0].primary << ", "
                       << r.epochs[1].primary << ", " << r.epochs[2].primary << "; loss "
                       << r.first_loss << " → " << r.last_loss);
    BOOST_TEST(chance <= 0.01);
    BOOST_TEST(r.epochs.back().primary >= 0.10);
    BOOST_TEST(r.epochs.back().primary > r.epochs.front().primary);
    BOOST_TEST(r.last_loss < 0.5 * r.first_loss);
}

namespace
{
/// Trains `o` without and with `add_dropout` applied to it from the same seed: training differs
/// (masks are drawn in training), and the trained model evaluates deterministically (eval mode:
/// the same loss twice, so validation sees no dropout), with a new mask every training run.
void check_dropout_acts_in_training_only(train_options o,
                                         const std::function<void(train_options&)>& add_dropout)
{
    o.epochs = 1;
    o.steps = 20;
    o.batch = 8;
    o.quiet = true;
    o.samples = 0;
    o.model.hidden = 32;
    o.model.embed = 8;
    const train_result plain = train(o, stdout);
    add_dropout(o);
    const train_result dropped = train(o, stdout);
    BOOST_TEST(plain.first_loss != dropped.first_loss);
    BOOST_TEST(plain.last_loss != dropped.last_loss);

    model& m = *dropped.trained;
    const addition_task tk;
    generator g(3);
    std::vector<example> ex;
    for (int i = 0; i < 8; ++i)
        ex.push_back(tk.draw(g));
    const token_batch b = make_batch(tk.vocab(), ex);
    auto loss = [&] {
        tape t;
        teacher_forcing teacher;
        return run_loss(m.run(t, b, teacher), b).item();
    };
    const real evaluated = loss();
    BOOST_TEST(loss() == evaluated);
    generator masks(5);
    m.train(masks);
    const real in_training = loss();
    BOOST_TEST(in_training != evaluated);
    BOOST_TEST(loss() != in_training);
    m.eval();
    BOOST_TEST(loss() == evaluated);
}
} // namespace

BOOST_AUTO_TEST_CASE(dropout_between_layers_acts_in_training_only)
{
    train_options o;
    o.model.layers = 2;
    check_dropout_acts_in_training_only(o, [](train_options& d) { d.model.dropout = 0.5; });
}

BOOST_AUTO_TEST_CASE(recurrent_dropout_acts_in_training_only)
{
    for (const char* cell : {"gru", "lstm"})
    {
        BOOST_TEST_CONTEXT(cell)
        {
            train_options o;
            o.model.cell = cell;
            check_dropout_acts_in_training_only(
                o, [](train_options& d) { d.model.recurrent_dropout = 0.3; });
        }
    }
}

BOOST_AUTO_TEST_CASE(truncated_bptt_on_text_carries_the_state_detached)
{
    std::string text;
    for (int i = 0; i < 60; ++i)
        text += "the cat sat on the mat. ";
    temp_file file("text.txt", text);
    train_options o;
    o.model.task = "text";
    o.text_file = file.path;
    o.model.hidden = 32;
    o.model.embed = 8;
    o.tbptt = 16;
    o.batch = 4;
    o.epochs = 2;
    o.steps = 0; // one pass
    o.lr = 0.02;
    o.quiet = true;
    const train_result r = train(o, stdout);
    BOOST_TEST_REQUIRE(r.epochs.size() == 2u);
    BOOST_TEST_MESSAGE("text: next-char accuracy " << r.epochs.back().primary);
    BOOST_TEST(r.epochs.back().primary > 0.6);
    // The state a chunk ends with goes into the next one as constants: a second chunk run from
    // it differs from one run from zeros, and its backward stops at the boundary.
    const text_corpus c = text_corpus::load(file.path);
    const text_stream s(c.train, 2, 8);
    teacher_forcing teacher;
    tape t1;
    const model_run first = r.trained->run(t1, s.chunk(0), teacher);
    tape t2;
    const model_run from_carried = r.trained->run(t2, s.chunk(1), teacher, first.final_state);
    const model_run from_zeros = r.trained->run(t2, s.chunk(1), teacher);
    BOOST_TEST(testing::max_abs_diff(from_carried.logits[0].value(), from_zeros.logits[0].value()) >
               1e-3);
    first.logits[0].retain_grad();
    t2.backward(run_loss(from_carried, s.chunk(1)));
    BOOST_TEST(testing::max_abs_diff(first.logits[0].grad(), zeros(first.logits[0].shape())) == 0);
}

BOOST_AUTO_TEST_CASE(a_character_model_of_the_jargon_file_beats_character_frequencies)
{
    // The real text of the language-model recipe (Debian's jargon-text, which the scripts
    // install): 150 steps of a small LSTM already predict the held-out tenth far better than its
    // characters' frequencies in the training text do.
    const std::string gz = "/usr/share/doc/jargon-text/jargon.txt.gz";
    BOOST_TEST_REQUIRE(std::filesystem::exists(gz), gz << " is missing: install jargon-text");
    temp_file text("jargon.txt");
    BOOST_TEST_REQUIRE(std::system(("gzip -dc " + gz + " > " + text.path).c_str()) == 0);
    const text_corpus corpus = text_corpus::load(text.path);
    BOOST_TEST(corpus.train.size() + corpus.valid.size() > 1000000u);

    std::vector<double> counts(corpus.vocab.size(), 1); // add-one smoothed unigram
    for (std::size_t id : corpus.train)
        counts[id] += 1;
    const double n = double(corpus.train.size() + corpus.vocab.size());
    double unigram_bits = 0;
    for (std::size_t id : corpus.valid)
        unigram_bits -= std::log2(counts[id] / n);
    unigram_bits /= double(corpus.valid.size());

    train_options o;
    o.text_file = text.path;
    o.model.task = "text";
    o.model.cell = "lstm";
    o.model.hidden = 64;
    o.model.embed = 32;
    o.tbptt = 32;
    o.batch = 32;
    o.epochs = 1;
    o.steps = 150;
    o.quiet = true;
    const train_result r = train(o, stdout);
    BOOST_TEST_REQUIRE(r.epochs.size() == 1u);
    const double bpc = metric_value(r.epochs[0], "bits_per_char");
    BOOST_TEST_MESSAGE("jargon file: held-out " << bpc << " bits per character after 150 steps, "
                                                << unigram_bits << " from character frequencies");
    BOOST_TEST(unigram_bits > 4.0);
    BOOST_TEST(bpc < unigram_bits - 0.6);
}

BOOST_AUTO_TEST_CASE(cli_errors_exit_with_status_2_and_one_line)
{
    temp_file bad_utf8("latin1.txt", std::string("caf\xe9 au lait, ") + std::string(200, 'x'));
    temp_file missing("missing.txt");
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"train", "--cell", "transformer"}, "--cell"},
        {{"train", "--hidden", "-3"}, "--hidden"},
        {{"train", "--batch", "0"}, "--batch"},
        {{"train", "--feeding", "sometimes"}, "--feeding"},
        {{"train", "--lr", "fast"}, "--lr"},
        {{"train", "--bogus"}, "--bogus"},
        {{"train", "--task", "addition", "--text", bad_utf8.path}, "--text"},
        {{"frobnicate"}, "frobnicate"},
        {{"train", "--text", missing.path}, missing.path},
        {{"train", "--text", bad_utf8.path}, bad_utf8.path},
        {{"sample"}, "--checkpoint"},
        {{"sample", "--checkpoint", missing.path}, missing.path},
        {{"eval", "--checkpoint", bad_utf8.path}, bad_utf8.path},
    };
    for (const auto& [args, named] : cases)
    {
        const cli_result r = run(args);
        const std::string shown = fmt::format("{}", fmt::join(args, " "));
        BOOST_TEST(r.status == 2, shown << ": status " << r.status);
        BOOST_TEST(r.out.empty(), shown);
        BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, shown << ": " << r.err);
        BOOST_TEST(r.err.rfind("unfold: ", 0) == 0u, r.err);
        BOOST_TEST(r.err.find(named) != std::string::npos, shown << ": " << r.err);
    }
}

BOOST_AUTO_TEST_CASE(the_built_program_exits_with_status_2_on_bad_arguments)
{
    const auto program = built_program();
    if (!std::filesystem::exists(program))
    {
        BOOST_TEST_MESSAGE("skipped: " << program << " is not built");
        return;
    }
    temp_file err("stderr.txt");
    const std::string cmd = program.string() + " train --cell nope 2>" + err.path + " >/dev/null";
    const int status = std::system(cmd.c_str());
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 2);
    std::ifstream in(err.path);
    const std::string message((std::istreambuf_iterator<char>(in)), {});
    BOOST_TEST(std::count(message.begin(), message.end(), '\n') == 1, message);
    BOOST_TEST(message.find("--cell") != std::string::npos, message);
}

BOOST_AUTO_TEST_CASE(ctrl_c_saves_a_checkpoint_before_exiting)
{
    const auto program = built_program();
    if (!std::filesystem::exists(program))
    {
        BOOST_TEST_MESSAGE("skipped: " << program << " is not built");
        return;
    }
    temp_file ckpt("interrupted.safetensors"), log("interrupted.log");
    const std::string ckpt_arg = "--checkpoint=" + ckpt.path;
    const pid_t pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0)
    {
        const int fd = ::open(log.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 1);
        ::execl(program.c_str(), "unfold", "train", "--hidden", "16", "--epochs", "100000",
                "--steps", "8", "--batch", "4", ckpt_arg.c_str(), nullptr);
        ::_exit(127);
    }
    // Wait for the first progress line (training has started), then press Ctrl-C.
    for (int i = 0; i < 600; ++i)
    {
        std::ifstream in(log.path);
        const std::string text((std::istreambuf_iterator<char>(in)), {});
        if (text.find("step ") != std::string::npos)
            break;
        ::usleep(50000);
    }
    ::kill(pid, SIGINT);
    int status = 0;
    ::waitpid(pid, &status, 0);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 130);
    BOOST_TEST_REQUIRE(std::filesystem::exists(ckpt.path));
    const auto m = load_model(ckpt.path);
    BOOST_TEST(m->config().hidden == 16u);
}

BOOST_AUTO_TEST_CASE(checkpoints_rebuild_the_model_for_sample_and_eval)
{
    temp_file ckpt("model.safetensors");
    const cli_result trained =
        run({"train", "--cell",  "lstm",         "--layers", "2", "--hidden", "12", "--embed",
             "6",     "--gate",  "hard_sigmoid", "--epochs", "1", "--steps",  "3",  "--batch",
             "8",     "--quiet", "--checkpoint", ckpt.path});
    BOOST_TEST_REQUIRE(trained.status == 0, trained.err);
    const checkpoint_metadata meta = read_checkpoint_metadata(ckpt.path);
    BOOST_TEST(meta.at("unfold.cell") == "lstm");
    BOOST_TEST(meta.at("unfold.layers") == "2");
    BOOST_TEST(meta.at("unfold.gate") == "hard_sigmoid");
    const auto m = load_model(ckpt.path);
    BOOST_TEST(m->config().hidden == 12u);
    BOOST_TEST(m->store().contains("rnn.weight_hh_l1"));
    BOOST_TEST(m->store().get("rnn.weight_hh_l1").shape() == shape_type({48, 12}));

    const cli_result sampled = run(
        {"sample", "--checkpoint", ckpt.path, "--prompt", "12+34=", "--greedy", "--length", "5"});
    BOOST_TEST(sampled.status == 0, sampled.err);
    BOOST_TEST(sampled.out.rfind("12+34=", 0) == 0u, sampled.out);
    // Greedy sampling is deterministic: the same text twice.
    BOOST_TEST(run({"sample", "--checkpoint", ckpt.path, "--prompt", "12+34=", "--greedy",
                    "--length", "5"})
                   .out == sampled.out);
    const cli_result unknown = run({"sample", "--checkpoint", ckpt.path, "--prompt", "x"});
    BOOST_TEST(unknown.status == 2);
    BOOST_TEST(unknown.err.find("'x'") != std::string::npos, unknown.err);

    const cli_result evaluated = run({"eval", "--checkpoint", ckpt.path});
    BOOST_TEST(evaluated.status == 0, evaluated.err);
    BOOST_TEST(evaluated.out.find("exact_match") != std::string::npos, evaluated.out);
    const cli_result wrong_task = run({"eval", "--checkpoint", ckpt.path, "--task", "reber"});
    BOOST_TEST(wrong_task.status == 2);
}

/// The score of `d` on `text` in chunks of `chunk` from up to `streams` streams.
template <class Cell>
text_score score_in_chunks(const decoder<Cell>& d, const std::vector<std::size_t>& text,
                           std::size_t chunk)
{
    text_scoring how;
    how.chunk = chunk;
    return score_text(d, text, how);
}

BOOST_AUTO_TEST_CASE(held_out_text_scored_in_chunks_with_carried_state_equals_one_pass)
{
    // Two streams of 257 characters: in 8 chunks of 32 with the state carried between them, or in
    // one chunk of 256, every stream's last 256 characters are scored from everything before them,
    // so the two scores agree to float round-off. Zero states at every chunk would not.
    generator text_rng(3);
    std::vector<std::size_t> text;
    for (std::size_t i = 0; i < 514; ++i)
        text.push_back(3 + i % 7 + (text_rng.uniform({1}, 0, 1)(0) < 0.3 ? 1 : 0));
    small_model gru(12);
    param_store store;
    generator g(8);
    const decoder<lstm_cell> lstm =
        make_decoder(store, 12, 6, 10, 2, g, [&](param_store& s, std::size_t in, layer_options lo) {
            return lstm_layer(s, in, 10, g, lo);
        });
    auto check = [&](const auto& d, const char* cell) {
        const text_score chunked = score_in_chunks(d, text, 32);
        const text_score whole = score_in_chunks(d, text, 256);
        BOOST_TEST_MESSAGE(cell << ": " << chunked.bits_per_char
                                << " bits per character in chunks, " << whole.bits_per_char
                                << " in one");
        BOOST_TEST(chunked.characters == 512u);
        BOOST_TEST(whole.characters == 512u);
        BOOST_TEST(text_scoring{}.scored(text.size()) == 512u);
        BOOST_TEST(std::abs(chunked.loss - whole.loss) < 1e-5 * whole.loss, cell);
        BOOST_TEST(chunked.next_char == whole.next_char, cell);
        BOOST_TEST(std::abs(chunked.bits_per_char - chunked.loss / std::log(2.0)) < 1e-12);
        // An untrained model is close to uniform over the 12 tokens.
        BOOST_TEST(std::abs(whole.bits_per_char - std::log2(12.0)) < 0.5, cell);
    };
    check(gru.dec, "gru");
    check(lstm, "lstm");

    // The carried state starts the next chunk where the last one ended; a fresh start differs.
    const text_stream s(text, 2, 32);
    teacher_forcing teacher;
    tape t1;
    const auto first = lstm.run(t1, s.chunk(0), teacher);
    const auto carried = decoder<lstm_cell>::carry(first.final_state);
    BOOST_TEST_REQUIRE(carried.size() == 2u); // layers
    tape t2;
    const auto resumed = decoder<lstm_cell>::resume(t2, carried);
    BOOST_TEST(testing::max_abs_diff(resumed[1].c.value(), first.final_state[1].c.value()) == 0);
    BOOST_TEST(!resumed[1].c.requires_grad()); // constants: backward stops at the boundary
    const auto from_carried = lstm.run(t2, s.chunk(1), teacher, resumed);
    const auto from_zeros = lstm.run(t2, s.chunk(1), teacher);
    BOOST_TEST(testing::max_abs_diff(from_carried.logits[0].value(), from_zeros.logits[0].value()) >
               1e-4);
    BOOST_TEST(decoder<lstm_cell>::resume(t2, {}).empty()); // run() starts it from zeros
}

BOOST_AUTO_TEST_CASE(held_out_text_is_scored_in_evaluation_mode_and_prompts_are_checked)
{
    small_model m(12);
    const std::vector<std::size_t> text(400, 5);
    generator dropout_rng(1);
    m.dec.train(dropout_rng);
    testing::expect_error([&] { (void)score_text(m.dec, text); },
                          {"score_text", "training mode", "eval()"});
    m.dec.eval();
    BOOST_TEST(score_text(m.dec, text).characters == text_scoring{}.scored(400));
    testing::expect_error([&] { (void)score_text(m.dec, std::vector<std::size_t>(40, 5)); },
                          {"40 characters are too few"});

    const vocabulary lines = vocabulary::of_text(utf8_chars("ab c\nd", "t"));
    const vocabulary words = vocabulary::of_text(utf8_chars("ab c", "t"));
    const vocabulary letters = vocabulary::of_text(utf8_chars("abc", "t"));
    BOOST_TEST(text_prompt(lines, "") == std::vector<std::size_t>{lines.id("\n")});
    BOOST_TEST(text_prompt(words, "") == std::vector<std::size_t>{words.id(" ")});
    BOOST_TEST(text_prompt(letters, "") == std::vector<std::size_t>{letters.id("a")});
    BOOST_TEST((text_prompt(words, "cab") ==
                std::vector<std::size_t>{words.id("c"), words.id("a"), words.id("b")}));
    testing::expect_error([&] { (void)text_prompt(words, "abz", "--prompt"); },
                          {"--prompt", "'z'", "not in the model's vocabulary"});
}

// Note [Memory policies]: `unfold train --bptt-memory` changes what a step keeps, not what it
// computes. The same run under every policy ends with bit-identical parameters — a decoder under
// teacher forcing and under scheduled sampling, and an encoder–decoder — and every:3 keeps less.
BOOST_AUTO_TEST_CASE(training_under_a_memory_policy_gives_the_same_parameters)
{
    struct setup
    {
        std::string task, model, feeding;
    };
    for (const setup& s :
         {setup{"addition", "decoder", "teacher"}, setup{"addition", "decoder", "scheduled"},
          setup{"reverse", "seq2seq", "teacher"}})
    {
        std::vector<tensor> reference;
        std::size_t reference_peak = 0;
        for (const std::string memory : {"all", "every:3", "gemm", "every:3,gemm:4"})
        {
            temp_file ckpt("memory-" + s.model + "-" + memory + ".safetensors");
            train_options o;
            o.model.task = s.task;
            o.model.architecture = s.model;
            o.model.cell = "lstm";
            o.model.layers = 2;
            o.model.hidden = 16;
            o.model.embed = 8;
            o.model.bptt_memory = memory;
            o.feeding = s.feeding;
            o.epochs = 1;
            o.steps = 6;
            o.batch = 8;
            o.quiet = true;
            o.checkpoint = ckpt.path;
            const train_result r = train(o, stdout);
            std::filesystem::remove(best_checkpoint_path(ckpt.path));
            std::vector<tensor> params;
            for (const param& p : r.trained->store())
                params.push_back(p.value());
            BOOST_TEST_MESSAGE(s.model << " " << s.feeding << " under " << memory << ": tape peak "
                                       << r.bptt_peak_bytes);
            if (memory == "all")
            {
                reference = params;
                reference_peak = r.bptt_peak_bytes;
                continue;
            }
            if (memory == "every:3") // gemm keeps GEMM outputs, as much as `all` here
                BOOST_TEST(r.bptt_peak_bytes < reference_peak, memory);
            for (std::size_t i = 0; i < params.size(); ++i)
                BOOST_TEST((params[i].shape() == reference[i].shape() &&
                            std::memcmp(params[i].data(), reference[i].data(),
                                        params[i].size() * sizeof(real)) == 0),
                           s.model << " " << s.feeding << " " << memory << ": parameter " << i);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
