// Recurrent (variational) dropout (models/recurrent_dropout.hpp): the same masks at every step of
// a sequence, different ones for each sequence, kept at the rate asked for, scaled by 1/(1 − p),
// exactly the plain cell with both probabilities 0, and bad probabilities refused. Its gradient
// is checked in double in models_tests_f64.cpp.
#include <cmath>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "test_util.hpp"
#include <unfold/models/lstm.hpp>
#include <unfold/models/recurrent_dropout.hpp>
#include <unfold/models/unroll.hpp>

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
