#pragma once
/// Parity of the recurrent layers with PyTorch 1.13, shared by tests/parity_tests.cpp (float) and
/// tests/parity_tests_f64.cpp (double). The fixtures tests/fixtures/recurrent_<config>.txt come
/// from scripts/fixtures/recurrent.py: a torch.nn.RNN/GRU/LSTM (or the layer-normalised LSTM and
/// GRU written with torch ops; the LSTM also with proj_size), its parameters under their PyTorch
/// names, x, h0 (c0), lengths for a packed batch, and PyTorch's output, h_n (c_n) and gradients of
///     loss = Σ w_out ⊙ output + Σ w_h ⊙ h_n (+ Σ w_c ⊙ c_n)
/// with respect to x, h0 (c0) and every parameter, computed in float64.
///
/// check_parity builds the matching Unfold layer, sets every parameter by its PyTorch name, runs
/// it, seeds backward with the same weightings and compares everything elementwise:
/// |unfold − torch| ≤ abs + rel·|torch|, with (1e-5, 1e-4) in float and (1e-10, 0) in double.
///
/// The cases are listed once, in UNFOLD_PARITY_TEST_CASES below; each program expands it in its own
/// suite, so a new fixture is one line there.

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include <unfold/framework/random.hpp>
#include <unfold/models/attention.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/layer_norm_cells.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/rnn.hpp>

namespace unfold::testing
{

/// |actual − expected| ≤ abs + rel·|expected|, elementwise.
struct parity_tolerance
{
    double abs;
    double rel;
};

inline constexpr parity_tolerance parity_tol =
    std::is_same_v<real, double> ? parity_tolerance{1e-10, 0} : parity_tolerance{1e-5, 1e-4};

/// The largest errors of one configuration, for the test log.
struct parity_errors
{
    double forward = 0;  ///< max |Δ| over output, h_n, c_n
    double gradient = 0; ///< max |Δ| over every gradient
    std::size_t compared = 0;
};

/// Compares `actual` with the reference `expected` under parity_tol; one failure per tensor names
/// its worst element. Returns max |actual − expected|.
inline double compare_to_reference(const std::string& what, const tensor& actual,
                                   const tensor& expected, std::size_t& compared)
{
    BOOST_TEST_REQUIRE(actual.shape() == expected.shape(),
                       what << ": shape " << shape_str(actual.shape()) << ", PyTorch's is "
                            << shape_str(expected.shape()));
    double max_error = 0;
    double worst_excess = 0;
    std::size_t worst = 0;
    for (std::size_t i = 0; i < actual.size(); ++i)
    {
        const double a = double(actual.data()[i]);
        const double e = double(expected.data()[i]);
        const double error = std::abs(a - e); // NaN compares false below and fails
        max_error = std::max(max_error, error);
        const double excess = error - (parity_tol.abs + parity_tol.rel * std::abs(e));
        if (!(excess <= 0) && !(excess <= worst_excess))
        {
            worst_excess = std::isnan(excess) ? HUGE_VAL : excess;
            worst = i + 1;
        }
    }
    if (worst > 0)
    {
        // The (i, j, ...) index of the worst element, row-major.
        std::vector<std::size_t> index(actual.dimension());
        for (std::size_t k = index.size(), rest = worst - 1; k-- > 0; rest /= actual.shape()[k])
            index[k] = rest % actual.shape()[k];
        BOOST_ERROR(what << " at " << fmt::format("{}", index) << ": " << std::setprecision(17)
                         << double(actual.data()[worst - 1]) << ", PyTorch has "
                         << double(expected.data()[worst - 1]) << "; max |error| " << max_error
                         << ", tolerance " << parity_tol.abs << " + " << parity_tol.rel
                         << "·|PyTorch|");
    }
    compared += actual.size();
    return max_error;
}

namespace detail
{
/// Names in a recurrent fixture that are not parameters.
inline bool is_parameter_entry(const std::string& name)
{
    static const std::set<std::string> data{"x",   "h0",    "c0",  "output", "h_n",
                                            "c_n", "w_out", "w_h", "w_c"};
    return !data.count(name) && name.rfind("grad.", 0) != 0;
}

template <class Cell>
parity_errors check_layer(const fixture& f, const layer<Cell>& model)
{
    const bool is_lstm = f.config("cell") == "lstm" || f.config("cell") == "ln_lstm";

    // Every parameter by its PyTorch name; the two sets of names must be the same.
    std::set<std::string> ours;
    for (param p : model.params())
    {
        ours.insert(p.name());
        p.assign(f[p.name()]);
    }
    std::set<std::string> theirs;
    for (const auto& name : f.tensor_names())
        if (is_parameter_entry(name))
            theirs.insert(name);
    BOOST_TEST(ours == theirs, "parameter names differ from PyTorch's named_parameters()");

    std::vector<std::size_t> lengths;
    if (f.config_int("masked"))
        for (long n : f.ints("lengths"))
            lengths.push_back(std::size_t(n));

    tape t;
    const var x = t.variable(f["x"]);
    std::vector<var> initial{t.variable(f["h0"])};
    if (is_lstm)
        initial.push_back(t.variable(f["c0"]));
    const layer_result r = model(t, x, initial, lengths);

    parity_errors e;
    auto forward = [&](const char* name, const var& v) {
        e.forward = std::max(e.forward, compare_to_reference(name, v.value(), f[name], e.compared));
    };
    auto gradient = [&](const std::string& name, const tensor& g) {
        e.gradient = std::max(
            e.gradient, compare_to_reference("grad." + name, g, f["grad." + name], e.compared));
    };
    forward("output", r.output);
    forward("h_n", r.h_n());
    std::vector<var> outputs{r.output, r.h_n()};
    std::vector<tensor> seeds{f["w_out"], f["w_h"]};
    if (is_lstm)
    {
        forward("c_n", r.c_n());
        outputs.push_back(r.c_n());
        seeds.push_back(f["w_c"]);
    }
    BOOST_TEST_REQUIRE(r.final_state.size() == outputs.size() - 1);

    t.backward(outputs, seeds);
    gradient("x", x.grad());
    gradient("h0", initial[0].grad());
    if (is_lstm)
        gradient("c0", initial[1].grad());
    for (const param& p : model.params())
        gradient(p.name(), p.grad());
    return e;
}
} // namespace detail

/// Attention's parity with its equations in torch ops (scripts/fixtures/attention.py): sets the
/// parameters from tests/fixtures/<config>.txt, attends with the fixture's query over its memory
/// and lengths, and compares the weights, the context and the gradients of memory, query and every
/// parameter.
inline void check_attention_parity(const std::string& config)
{
    const fixture f(UNFOLD_SOURCE_DIR "/tests/fixtures/" + config + ".txt");
    const attention_kind kind =
        f.config("kind") == "additive" ? attention_kind::additive : attention_kind::multiplicative;
    const tensor memory = f["memory"], query = f["query"];
    param_store store;
    generator g(1); // initial values only; every parameter is overwritten from the fixture
    const attention a = attention::create(store, kind, memory.shape()[2], query.shape()[1],
                                          std::size_t(f.config_int("attention_size")), g, "");
    for (param p : store)
        p.value() = f[p.name()];
    std::vector<std::size_t> lengths;
    for (long n : f.ints("lengths"))
        lengths.push_back(std::size_t(n));
    tape t;
    const var m = t.variable(memory), q = t.variable(query);
    const attention_step out = a(t, a.remember(t, m, lengths), q);
    t.backward(sum(out.weights * t.constant(f["w_weights"])) +
               sum(out.context * t.constant(f["w_context"])));
    parity_errors e;
    e.forward =
        std::max(compare_to_reference("weights", out.weights.value(), f["weights"], e.compared),
                 compare_to_reference("context", out.context.value(), f["context"], e.compared));
    e.gradient =
        std::max(compare_to_reference("grad.memory", m.grad(), f["grad.memory"], e.compared),
                 compare_to_reference("grad.query", q.grad(), f["grad.query"], e.compared));
    for (const param& p : store)
        e.gradient = std::max(e.gradient, compare_to_reference("grad." + p.name(), p.grad(),
                                                               f["grad." + p.name()], e.compared));
    BOOST_TEST(store.size() == (kind == attention_kind::additive ? 4u : 1u));
    BOOST_TEST_MESSAGE("parity " << config << " (" << (std::is_same_v<real, double> ? "f64" : "f32")
                                 << "): " << e.compared << " values, max |error| forward "
                                 << e.forward << ", gradients " << e.gradient);
}

/// Runs the parity check of tests/fixtures/recurrent_<config>.txt (or attention's, for a config
/// "attention_<kind>") and logs its largest errors (visible with --log_level=message).
inline void check_parity(const std::string& config)
{
    if (config.rfind("attention_", 0) == 0)
        return check_attention_parity(config);
    const fixture f(UNFOLD_SOURCE_DIR "/tests/fixtures/recurrent_" + config + ".txt");
    const std::string cell = f.config("cell");
    const std::size_t input_size = std::size_t(f.config_int("input_size"));
    const std::size_t hidden_size = std::size_t(f.config_int("hidden_size"));
    layer_options lo;
    lo.num_layers = std::size_t(f.config_int("layers"));
    lo.bidirectional = f.config_int("bidirectional") != 0;

    param_store store;
    generator g(1); // initial values only; every parameter is overwritten from the fixture
    parity_errors e;
    if (cell == "rnn")
    {
        const std::string& nonlinearity = f.config("nonlinearity");
        BOOST_TEST_REQUIRE((nonlinearity == "tanh" || nonlinearity == "relu"), nonlinearity);
        rnn_options o;
        o.state = nonlinearity == "tanh" ? activations::tanh() : activations::relu();
        e = detail::check_layer(f, rnn_layer(store, input_size, hidden_size, g, lo, o));
    }
    else if (cell == "gru")
        e = detail::check_layer(f, gru_layer(store, input_size, hidden_size, g, lo));
    else if (cell == "ln_lstm")
        e = detail::check_layer(f, layer_norm_lstm_layer(store, input_size, hidden_size, g, lo));
    else if (cell == "ln_gru")
        e = detail::check_layer(f, layer_norm_gru_layer(store, input_size, hidden_size, g, lo));
    else
    {
        BOOST_TEST_REQUIRE(cell == "lstm");
        lstm_options o;
        if (f.has_config("proj_size"))
            o.proj_size = std::size_t(f.config_int("proj_size"));
        e = detail::check_layer(f, lstm_layer(store, input_size, hidden_size, g, lo, o));
    }
    const std::size_t per_cell = cell == "ln_lstm"           ? 8
                                 : cell == "ln_gru"          ? 6
                                 : f.has_config("proj_size") ? 5
                                                             : 4;
    BOOST_TEST(store.size() == lo.num_layers * (lo.bidirectional ? 2 : 1) * per_cell);
    BOOST_TEST_MESSAGE("parity " << config << " (" << (std::is_same_v<real, double> ? "f64" : "f32")
                                 << "): " << e.compared << " values, max |error| forward "
                                 << e.forward << ", gradients " << e.gradient);
}

} // namespace unfold::testing

/// One Boost.Test case per parity fixture, for both programs: test name, then the fixture's
/// <config> (tests/fixtures/recurrent_<config>.txt). Expand it inside a test suite.
#define UNFOLD_PARITY_TEST_CASES()                                                                 \
    UNFOLD_PARITY_TEST_CASE(rnn_tanh, "rnn_tanh")                                                  \
    UNFOLD_PARITY_TEST_CASE(rnn_relu, "rnn_relu")                                                  \
    UNFOLD_PARITY_TEST_CASE(gru, "gru")                                                            \
    UNFOLD_PARITY_TEST_CASE(lstm, "lstm")                                                          \
    UNFOLD_PARITY_TEST_CASE(lstm_2layer, "lstm_2layer")                                            \
    UNFOLD_PARITY_TEST_CASE(gru_2layer, "gru_2layer")                                              \
    UNFOLD_PARITY_TEST_CASE(lstm_bidirectional, "lstm_bidir")                                      \
    UNFOLD_PARITY_TEST_CASE(gru_bidirectional, "gru_bidir")                                        \
    UNFOLD_PARITY_TEST_CASE(lstm_masked, "lstm_masked")                                            \
    UNFOLD_PARITY_TEST_CASE(gru_masked, "gru_masked")                                              \
    UNFOLD_PARITY_TEST_CASE(lstm_bidirectional_masked, "lstm_bidir_masked")                        \
    UNFOLD_PARITY_TEST_CASE(gru_bidirectional_masked, "gru_bidir_masked")                          \
    UNFOLD_PARITY_TEST_CASE(lstm_2layer_bidirectional_masked, "lstm_2layer_bidir_masked")          \
    UNFOLD_PARITY_TEST_CASE(layer_norm_lstm, "ln_lstm")                                            \
    UNFOLD_PARITY_TEST_CASE(layer_norm_lstm_2layer, "ln_lstm_2layer")                              \
    UNFOLD_PARITY_TEST_CASE(layer_norm_gru, "ln_gru")                                              \
    UNFOLD_PARITY_TEST_CASE(layer_norm_gru_2layer, "ln_gru_2layer")                                \
    UNFOLD_PARITY_TEST_CASE(lstm_projected, "lstm_proj")                                           \
    UNFOLD_PARITY_TEST_CASE(lstm_projected_2layer, "lstm_proj_2layer")                             \
    UNFOLD_PARITY_TEST_CASE(lstm_projected_bidirectional, "lstm_proj_bidir")                       \
    UNFOLD_PARITY_TEST_CASE(lstm_projected_2layer_bidirectional_masked,                            \
                            "lstm_proj_2layer_bidir_masked")                                       \
    UNFOLD_PARITY_TEST_CASE(attention_additive, "attention_additive")                              \
    UNFOLD_PARITY_TEST_CASE(attention_multiplicative, "attention_multiplicative")

/// The test case `name`: check_parity of tests/fixtures/recurrent_<config>.txt.
#define UNFOLD_PARITY_TEST_CASE(name, config)                                                      \
    BOOST_AUTO_TEST_CASE(name) { unfold::testing::check_parity(config); }
