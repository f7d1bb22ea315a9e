// Recurrent (variational) dropout (models/recurrent_dropout.hpp): the same masks at every step of
// a sequence, different ones for each sequence, kept at the rate asked for, scaled by 1/(1 − p),
// exactly the plain cell with both probabilities 0, and bad probabilities refused. Zoneout
// (models/zoneout.hpp): every unit either kept or updated, at the rate asked for, a new mask at
// every step, the expectation in evaluation. Both gradients are checked in double in
// models_tests_f64.cpp.
#include <cmath>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/models/lstm.hpp>
#include <unfold/models/recurrent_dropout.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/models/zoneout.hpp>

using namespace unfold;
using unfold::testing::expect_error;

namespace
{
/// A cell that remembers what each step reads and returns its input as the new state (I = H).
struct reading_cell
{
    using state = var;
    std::vector<tensor>* inputs;
    std::vector<tensor>* states;
    var operator()(tape&, const var& x, const var& s) const
    {
        inputs->push_back(x.value());
        states->push_back(s.value());
        return x;
    }
};

/// The fraction of nonzero elements of t.
double kept(const tensor& t)
{
    double n = 0;
    for (real v : t)
        n += v != 0;
    return n / double(t.size());
}
} // namespace

BOOST_AUTO_TEST_SUITE(recurrent_dropout)

BOOST_AUTO_TEST_CASE(one_mask_per_sequence_the_same_at_every_step)
{
    constexpr std::size_t T = 6, B = 64, W = 100;
    const real p_input = 0.25, p_state = 0.5;
    std::vector<tensor> inputs, states;
    tape t;
    generator g(7);
    const auto cell =
        with_recurrent_dropout(reading_cell{&inputs, &states}, t, g, B, W, W, {p_input, p_state});
    const std::vector<var> hs =
        unroll(cell, t, t.constant(full({T, B, W}, 1)), t.constant(full({B, W}, 1)));
    BOOST_TEST_REQUIRE(inputs.size() == T);

    // Every step reads the same input mask: kept elements are 1/(1 − p), dropped ones 0.
    const tensor& input_mask = inputs[0];
    for (std::size_t k = 1; k < T; ++k)
        BOOST_TEST((inputs[k] == input_mask));
    for (real v : input_mask)
        BOOST_TEST((v == 0 || v == real(1 / (1 - p_input))));
    // The state mask: step 0 reads h_0 = 1 through it; step k > 0 reads h_{k−1} = the masked
    // input, through the same state mask.
    const tensor& state_mask = states[0];
    for (std::size_t k = 1; k < T; ++k)
        BOOST_TEST((states[k] == input_mask * state_mask));
    // The state a step returns is not masked: h_k is what the cell computed.
    BOOST_TEST((hs.back().value() == input_mask));

    // Kept at 1 − p within four standard deviations over B·W = 6400 elements.
    const double n = double(B * W);
    BOOST_TEST(std::abs(kept(input_mask) - (1 - p_input)) <
               4 * std::sqrt(p_input * (1 - p_input) / n));
    BOOST_TEST(std::abs(kept(state_mask) - (1 - p_state)) <
               4 * std::sqrt(p_state * (1 - p_state) / n));
    // Sequences get masks of their own: no two of the first rows are equal.
    for (std::size_t b = 1; b < 8; ++b)
        BOOST_TEST(!(xt::view(input_mask, b) == xt::view(input_mask, 0)));
}

BOOST_AUTO_TEST_CASE(an_lstm_with_its_projection_and_probabilities_0_is_the_lstm_exactly)
{
    constexpr std::size_t T = 5, B = 3, I = 4, H = 6;
    generator g(1);
    param_store store;
    const lstm_cell lstm = lstm_cell::create(store, I, H, g);
    const tensor x = g.uniform({T, B, I}, -1, 1);
    tape t;
    const auto plain = unroll(lstm, t, t.constant(x), zero_state<lstm_state>(t, B, H));
    const auto same = unroll(with_recurrent_dropout(lstm, t, g, B, I, H, {}), t, t.constant(x),
                             zero_state<lstm_state>(t, B, H));
    for (std::size_t k = 0; k < T; ++k)
        BOOST_TEST((same[k].h.value() == plain[k].h.value()));

    // Dropped, the LSTM's whole-sequence projection reads the masked input: with the input fully
    // kept by chance impossible, the outputs differ, and the c part is never masked (finite).
    const auto dropped = unroll(with_recurrent_dropout(lstm, t, g, B, I, H, {0.5, 0.5}), t,
                                t.constant(x), zero_state<lstm_state>(t, B, H));
    BOOST_TEST(!(dropped.back().h.value() == plain.back().h.value()));
}

BOOST_AUTO_TEST_CASE(a_probability_outside_0_1_is_refused)
{
    tape t;
    generator g(1);
    std::vector<tensor> inputs, states;
    const reading_cell cell{&inputs, &states};
    expect_error(
        [&] {
            (void)with_recurrent_dropout(cell, t, g, 2, 3, 3, {1, 0});
        },
        {"recurrent dropout", "input", "1", "[0, 1)"});
    expect_error(
        [&] {
            (void)with_recurrent_dropout(cell, t, g, 2, 3, 3, {0, -0.1f});
        },
        {"recurrent dropout", "state", "-0.1"});
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(zoneout)

BOOST_AUTO_TEST_CASE(each_unit_keeps_its_previous_value_or_takes_the_new_one_at_the_rate_asked_for)
{
    constexpr std::size_t T = 40, B = 16, I = 3, H = 8;
    generator g(2);
    param_store store;
    const lstm_cell lstm = lstm_cell::create(store, I, H, g);
    tape t;
    const var x = t.constant(g.uniform({T, B, I}, -1, 1));
    generator masks(3);
    const zoneout_options o{0.2f, 0.6f};
    const auto zoned = with_zoneout(lstm, o, &masks);
    lstm_state s = zero_state<lstm_state>(t, B, H);
    std::size_t kept_h = 0, kept_c = 0, units = 0, changed_masks = 0;
    tensor last_kept = zeros({B, H});
    for (std::size_t k = 0; k < T; ++k)
    {
        const var xk = select(x, std::ptrdiff_t(k));
        const lstm_state fresh = step(lstm, t, xk, s); // what the cell alone writes
        const lstm_state next = zoned(t, xk, s);
        tensor kept = zeros({B, H});
        for (std::size_t i = 0; i < B * H; ++i)
        {
            const real h = next.h.value().data()[i], c = next.c.value().data()[i];
            const bool h_kept = h == s.h.value().data()[i] && h != fresh.h.value().data()[i];
            const bool c_kept = c == s.c.value().data()[i] && c != fresh.c.value().data()[i];
            BOOST_TEST((h_kept || h == fresh.h.value().data()[i]));
            BOOST_TEST((c_kept || c == fresh.c.value().data()[i]));
            kept_h += h_kept;
            kept_c += c_kept;
            kept.data()[i] = h_kept;
        }
        changed_masks += k > 0 && !(kept == last_kept);
        last_kept = kept;
        units += B * H;
        s = next;
    }
    // Kept at rate p, within 4 standard deviations (units that happen to be written with their
    // old value count as updated: at k = 0 the zero state and a fresh value differ everywhere).
    const double n = double(units);
    BOOST_TEST(std::abs(double(kept_h) / n - 0.2) < 4 * std::sqrt(0.2 * 0.8 / n));
    BOOST_TEST(std::abs(double(kept_c) / n - 0.6) < 4 * std::sqrt(0.6 * 0.4 / n));
    BOOST_TEST(changed_masks == T - 1); // a new mask at every step
}

BOOST_AUTO_TEST_CASE(evaluation_takes_the_expectation_and_probabilities_0_are_the_cell_exactly)
{
    constexpr std::size_t B = 3, I = 4, H = 5;
    generator g(4);
    param_store store;
    const lstm_cell lstm = lstm_cell::create(store, I, H, g);
    tape t;
    const var x = t.constant(g.uniform({B, I}, -1, 1));
    const lstm_state s{t.constant(g.uniform({B, H}, -1, 1)), t.constant(g.uniform({B, H}, -1, 1))};
    const lstm_state fresh = step(lstm, t, x, s);
    const lstm_state expected = with_zoneout(lstm, {0.25f, 0.5f}, nullptr)(t, x, s);
    for (std::size_t i = 0; i < B * H; ++i)
    {
        BOOST_TEST(expected.h.value().data()[i] ==
                       0.25f * s.h.value().data()[i] + 0.75f * fresh.h.value().data()[i],
                   boost::test_tools::tolerance(1e-6f));
        BOOST_TEST(expected.c.value().data()[i] ==
                       0.5f * s.c.value().data()[i] + 0.5f * fresh.c.value().data()[i],
                   boost::test_tools::tolerance(1e-6f));
    }
    generator masks(5);
    const lstm_state same = with_zoneout(lstm, {}, &masks)(t, x, s);
    BOOST_TEST((same.h.value() == fresh.h.value()));
    BOOST_TEST((same.c.value() == fresh.c.value()));
    expect_error(
        [&] {
            (void)with_zoneout(lstm, {1, 0}, &masks);
        },
        {"zoneout", "probability 1", "[0, 1)"});
    expect_error([&] { (void)with_zoneout(lstm, {0, -0.5f}, &masks); }, {"zoneout", "-0.5"});
}

BOOST_AUTO_TEST_SUITE_END()
