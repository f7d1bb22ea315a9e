// Recurrent models gradient-checked in double over short unrolls (T = 3–4, batch 2): every cell
// and layer, every parameter element and every input element perturbed. The cells are written
// only from ops, so these checks prove that unrolling them on one tape is exact BPTT.
#include <boost/test/unit_test.hpp>

#include <unfold/models/attention.hpp>
#include <unfold/models/check_cell.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/gru_reset_before.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/models/layer_norm_cells.hpp>
#include <unfold/models/linear.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/peephole_lstm.hpp>
#include <unfold/models/recurrent_dropout.hpp>
#include <unfold/models/rnn.hpp>
#include <unfold/models/seq2seq.hpp>
#include <unfold/models/unroll.hpp>
#include <unfold/models/zoneout.hpp>
#include <unfold/ops/sigmoid.hpp>
#include <unfold/ops/sub.hpp>

using namespace unfold;

static_assert(std::is_same_v<real, double>, "gradient checks run in the double build");

namespace
{
constexpr std::size_t T = 3, B = 2, I = 3, H = 4;

std::vector<param> all_of(const param_store& store) { return {store.begin(), store.end()}; }

/// check_cell over T steps with batch B, the cell's parameters all of `store`.
template <class Cell>
gradcheck_result check_unroll(const Cell& cell, const param_store& store, std::uint64_t seed,
                              real input_range = 1)
{
    cell_check_options o;
    o.steps = T;
    o.batch = B;
    o.seed = seed;
    o.input_range = input_range;
    return check_cell(cell, all_of(store), I, H, o);
}

/// Gradient-checks a layer on x (T', B, I) with an initial state (every part an input too) and
/// optional lengths; outputs are the output sequence, every final-state part and `last`.
template <class Cell>
gradcheck_result check_layer(const layer<Cell>& l, std::size_t steps,
                             const std::vector<std::size_t>& lengths, std::uint64_t seed,
                             std::function<void()> before_each_run = {})
{
    generator g(seed);
    const std::size_t LD = l.num_layers() * l.directions();
    std::vector<tensor> inputs{g.uniform({steps, B, l.input_size()}, -1, 1)};
    for (std::size_t k = 0; k < layer<Cell>::state_size; ++k)
        inputs.push_back(g.uniform({LD, B, l.state_sizes()[k]}, -0.5, 0.5));
    auto f = [&](tape& t, const std::vector<var>& xs) {
        if (before_each_run)
            before_each_run();
        const layer_result r = l(t, xs[0], {xs.begin() + 1, xs.end()}, lengths);
        std::vector<var> ys{r.output, r.last};
        ys.insert(ys.end(), r.final_state.begin(), r.final_state.end());
        return ys;
    };
    return gradcheck(f, inputs, l.params());
}

/// The minimal gated unit (Zhou et al., 2016), written by a user in a few lines:
///     f  = σ(x W_fᵀ + h U_fᵀ + b_f)
///     c  = tanh(x W_cᵀ + (f ⊙ h) U_cᵀ + b_c)
///     h' = (1 − f) ⊙ h + f ⊙ c
struct mgu_cell
{
    using state = var;
    param w_f, u_f, b_f, w_c, u_c, b_c;
    state operator()(tape& t, const var& x, const state& h) const
    {
        const var f = sigmoid(matmul_transposed(x, t[w_f]) + matmul_transposed(h, t[u_f]) + t[b_f]);
        const var c =
            tanh(matmul_transposed(x, t[w_c]) + matmul_transposed(f * h, t[u_c]) + t[b_c]);
        return (1 - f) * h + f * c;
    }
    static mgu_cell create(param_store& s, std::size_t in, std::size_t hidden, generator& g,
                           const param_name& n = {})
    {
        auto add = [&](const char* base, shape_type shape) {
            return add_uniform(s, n(base), shape, real(0.5), g);
        };
        return {add("w_f", {hidden, in}), add("u_f", {hidden, hidden}), add("b_f", {hidden}),
                add("w_c", {hidden, in}), add("u_c", {hidden, hidden}), add("b_c", {hidden})};
    }
};
} // namespace

BOOST_AUTO_TEST_SUITE(models_gradcheck)

BOOST_AUTO_TEST_CASE(rnn_cell_with_tanh_relu_elu_and_a_user_activation)
{
    const std::vector<std::pair<std::string, activation>> cases{
        {"tanh", activations::tanh()},
        {"relu", activations::relu()},
        {"elu", activations::elu(0.7)},
        {"user function x·σ(x)", [](const var& x) { return x * sigmoid(x); }}};
    for (const auto& [label, phi] : cases)
    {
        param_store store;
        generator g(1);
        rnn_options o;
        o.state = phi;
        const rnn_cell cell = rnn_cell::create(store, I, H, g, o);
        const gradcheck_result r = check_unroll(cell, store, 11);
        BOOST_TEST(r.passed, label << ":\n" << r.report);
        BOOST_TEST(r.checked == T * B * I + B * H + H * I + H * H + 2 * H);
    }
}

BOOST_AUTO_TEST_CASE(gru_cell_in_both_conventions_and_with_hard_sigmoid_gates)
{
    for (bool reset_after : {true, false})
        for (bool hard : {false, true})
        {
            param_store store;
            generator g(2);
            gru_options o;
            if (hard)
                o.gate = activations::hard_sigmoid();
            const gru_cell cell = gru_cell::create(store, I, H, g, o);
            const gradcheck_result r = reset_after
                                           ? check_unroll(cell, store, 12)
                                           : check_unroll(gru_reset_before_cell{cell}, store, 12);
            BOOST_TEST(r.passed, (reset_after ? "after" : "before")
                                     << (hard ? ", hard sigmoid" : "") << ":\n"
                                     << r.report);
            BOOST_TEST(r.checked == T * B * I + B * H + 3 * H * (I + H + 2));
        }
}

BOOST_AUTO_TEST_CASE(lstm_with_recurrent_dropout)
{
    // The masks are drawn from the same seed on every tape the check records, so every run of
    // the check sees the same masks; x, h_0, c_0 and every parameter are perturbed.
    param_store store;
    generator g(5);
    const lstm_cell lstm = lstm_cell::create(store, I, H, g);
    const std::vector<tensor> inputs{g.uniform({T, B, I}, -1, 1), g.uniform({B, H}, -0.5, 0.5),
                                     g.uniform({B, H}, -0.5, 0.5)};
    auto f = [&](tape& t, const std::vector<var>& xs) {
        generator masks(11);
        const auto cell = with_recurrent_dropout(lstm, t, masks, B, I, H, {0.3, 0.4});
        const auto states = unroll(cell, t, xs[0], lstm_state{xs[1], xs[2]});
        std::vector<var> ys;
        for (const auto& s : states)
            ys.push_back(s.h);
        ys.push_back(states.back().c);
        return ys;
    };
    const gradcheck_result r = gradcheck(f, inputs, all_of(store));
    BOOST_TEST(r.passed, r.report);
    BOOST_TEST(r.checked == T * B * I + 2 * B * H + 4 * H * (I + H + 2));
}

BOOST_AUTO_TEST_CASE(lstm_and_gru_with_zoneout_in_training_and_evaluation)
{
    // Training draws a mask at every step, from a generator seeded alike on every tape the check
    // records; evaluation mixes with the expectation. x, the initial state and every parameter
    // are perturbed.
    for (const bool training : {true, false})
    {
        param_store store;
        generator g(6);
        const lstm_cell lstm = lstm_cell::create(store, I, H, g);
        const std::vector<tensor> inputs{g.uniform({T, B, I}, -1, 1), g.uniform({B, H}, -0.5, 0.5),
                                         g.uniform({B, H}, -0.5, 0.5)};
        auto f = [&](tape& t, const std::vector<var>& xs) {
            generator masks(12);
            const auto cell = with_zoneout(lstm, {0.3, 0.5}, training ? &masks : nullptr);
            const auto states = unroll(cell, t, xs[0], lstm_state{xs[1], xs[2]});
            std::vector<var> ys;
            for (const auto& s : states)
                ys.push_back(s.h);
            ys.push_back(states.back().c);
            return ys;
        };
        const gradcheck_result r = gradcheck(f, inputs, all_of(store));
        BOOST_TEST(r.passed, (training ? "training: " : "evaluation: ") << r.report);
        BOOST_TEST(r.checked == T * B * I + 2 * B * H + 4 * H * (I + H + 2));
    }
    param_store store;
    generator g(7);
    const gru_cell gru = gru_cell::create(store, I, H, g);
    const std::vector<tensor> inputs{g.uniform({T, B, I}, -1, 1), g.uniform({B, H}, -0.5, 0.5)};
    auto f = [&](tape& t, const std::vector<var>& xs) {
        generator masks(14);
        return unroll(with_zoneout(gru, {0.4, 0}, &masks), t, xs[0], xs[1]);
    };
    const gradcheck_result r = gradcheck(f, inputs, all_of(store));
    BOOST_TEST(r.passed, r.report);
}

BOOST_AUTO_TEST_CASE(lstm_cell_with_and_without_peepholes_hard_sigmoid_and_relu_state)
{
    for (bool peepholes : {false, true})
        for (bool hard : {false, true})
        {
            param_store store;
            generator g(3);
            lstm_options o;
            o.forget_bias = 1;
            if (hard)
            {
                o.gate = activations::hard_sigmoid();
                o.state = activations::elu();
            }
            auto check = [&](const auto& cell) {
                BOOST_TEST(cell.bias_ih.value()(H) == 1.0);
                BOOST_TEST(cell.bias_hh.value()(H) == 0.0);
                return check_unroll(cell, store, 13);
            };
            const gradcheck_result r = peepholes
                                           ? check(peephole_lstm_cell::create(store, I, H, g, o))
                                           : check(lstm_cell::create(store, I, H, g, o));
            BOOST_TEST(r.passed, (peepholes ? "peepholes" : "plain")
                                     << (hard ? ", hard sigmoid / elu" : "") << ":\n"
                                     << r.report);
            BOOST_TEST(r.checked ==
                       T * B * I + 2 * B * H + 4 * H * (I + H + 2) + (peepholes ? 3 * H : 0));
        }
}

BOOST_AUTO_TEST_CASE(the_state_grad_flows_through_a_masked_unroll)
{
    param_store store;
    generator g(4);
    const lstm_cell cell = lstm_cell::create(store, I, H, g);
    const std::vector<std::size_t> lengths{3, 1};
    std::vector<tensor> inputs{g.uniform({T, B, I}, -1, 1), g.uniform({B, H}, -0.5, 0.5),
                               g.uniform({B, H}, -0.5, 0.5)};
    const gradcheck_result r = gradcheck(
        [&](tape& t, const std::vector<var>& xs) {
            const auto states =
                unroll(cell, t, xs[0], lstm_state{xs[1], xs[2]}, {direction::reverse, lengths});
            std::vector<var> ys = masked_outputs(t, states, lengths);
            ys.push_back(states.front().h);
            ys.push_back(states.front().c);
            return ys;
        },
        inputs, all_of(store));
    BOOST_TEST(r.passed, r.report);
}

BOOST_AUTO_TEST_CASE(two_layer_rnn_and_gru_layers)
{
    layer_options lo;
    lo.num_layers = 2;
    {
        param_store store;
        generator g(5);
        rnn_options o;
        o.state = activations::relu();
        const auto l = rnn_layer(store, I, H, g, lo, o);
        BOOST_TEST(store.contains("weight_hh_l1"));
        const gradcheck_result r = check_layer(l, 3, {}, 21);
        BOOST_TEST(r.passed, r.report);
    }
    {
        param_store store;
        generator g(6);
        const auto l = gru_layer(store, I, H, g, lo);
        const gradcheck_result r = check_layer(l, 3, {}, 22);
        BOOST_TEST(r.passed, r.report);
    }
}

BOOST_AUTO_TEST_CASE(bidirectional_gru_and_lstm_layers)
{
    layer_options lo;
    lo.bidirectional = true;
    {
        param_store store;
        generator g(7);
        const auto l = gru_layer(store, I, H, g, lo);
        BOOST_TEST(store.contains("bias_hh_l0_reverse"));
        const gradcheck_result r = check_layer(l, 3, {}, 23);
        BOOST_TEST(r.passed, r.report);
    }
    {
        param_store store;
        generator g(8);
        const auto l = lstm_layer(store, I, H, g, lo);
        const gradcheck_result r = check_layer(l, 3, {}, 24);
        BOOST_TEST(r.passed, r.report);
    }
}

BOOST_AUTO_TEST_CASE(two_layer_bidirectional_masked_lstm_layer)
{
    param_store store;
    generator g(9);
    layer_options lo;
    lo.num_layers = 2;
    lo.bidirectional = true;
    lo.prefix = "rnn.";
    const auto l = lstm_layer(store, I, 3, g, lo);
    BOOST_TEST(l.params().size() == 16u);
    BOOST_TEST(store.contains("rnn.weight_ih_l1_reverse"));
    const gradcheck_result r = check_layer(l, 4, {4, 2}, 25);
    BOOST_TEST(r.passed, r.report);
}

BOOST_AUTO_TEST_CASE(lstm_with_a_projection_as_a_cell_and_as_a_two_layer_bidirectional_masked_layer)
{
    constexpr std::size_t P = 2;
    lstm_options o;
    o.proj_size = P;
    {
        param_store store;
        generator g(41);
        const auto cell = lstm_cell::create(store, I, H, g, o);
        BOOST_TEST((cell.state_sizes() == std::array<std::size_t, 2>{P, H}));
        const gradcheck_result r = check_unroll(cell, store, 42);
        BOOST_TEST(r.passed, r.report);
        // x, h0 (B, P), c0 (B, H), W_ih, W_hh (4H, P), both biases, W_hr (P, H)
        BOOST_TEST(r.checked ==
                   T * B * I + B * P + B * H + 4 * H * I + 4 * H * P + 2 * 4 * H + P * H);
    }
    param_store store;
    generator g(43);
    layer_options lo;
    lo.num_layers = 2;
    lo.bidirectional = true;
    const auto l = lstm_layer(store, I, 3, g, lo, o);
    BOOST_TEST(l.params().size() == 20u);
    BOOST_TEST(store.get("weight_ih_l1").shape() == shape_type({4 * 3, 2 * P}));
    BOOST_TEST(store.get("weight_hr_l1_reverse").shape() == shape_type({P, 3}));
    const gradcheck_result r = check_layer(l, 4, {4, 2}, 44);
    BOOST_TEST(r.passed, r.report);
}

/// Moves every gain and bias of a layer-normalised cell away from its initial 1 or 0, so that the
/// check sees each of them act.
void spread_norm_params(param_store& store, generator& g)
{
    for (param p : store)
        if (p.name().rfind("ln_", 0) == 0)
            p.value() = p.value() + g.uniform(p.shape(), -0.4, 0.4);
}

BOOST_AUTO_TEST_CASE(layer_normalised_lstm_and_gru_cells_and_layers)
{
    {
        param_store store;
        generator g(31);
        const auto cell = layer_norm_lstm_cell::create(store, I, H, g);
        spread_norm_params(store, g);
        const gradcheck_result r = check_unroll(cell, store, 32);
        BOOST_TEST(r.passed, r.report);
        BOOST_TEST(r.checked == T * B * I + 2 * B * H + 4 * H * I + 4 * H * H + 4 * 4 * H + 2 * H);
    }
    {
        param_store store;
        generator g(33);
        gru_options o;
        o.gate = activations::hard_sigmoid();
        const auto cell = layer_norm_gru_cell::create(store, I, H, g, o);
        spread_norm_params(store, g);
        const gradcheck_result r = check_unroll(cell, store, 34);
        BOOST_TEST(r.passed, r.report);
        BOOST_TEST(r.checked == T * B * I + B * H + 3 * H * I + 3 * H * H + 4 * 3 * H);
    }
    layer_options lo;
    lo.num_layers = 2;
    lo.bidirectional = true;
    {
        param_store store;
        generator g(35);
        const auto l = layer_norm_lstm_layer(store, I, 3, g, lo);
        spread_norm_params(store, g);
        BOOST_TEST(l.params().size() == 32u);
        BOOST_TEST(store.contains("ln_c_weight_l1_reverse"));
        const gradcheck_result r = check_layer(l, 4, {4, 2}, 36);
        BOOST_TEST(r.passed, r.report);
    }
    {
        param_store store;
        generator g(37);
        const auto l = layer_norm_gru_layer(store, I, 3, g, lo);
        spread_norm_params(store, g);
        BOOST_TEST(l.params().size() == 24u);
        const gradcheck_result r = check_layer(l, 4, {3, 4}, 38);
        BOOST_TEST(r.passed, r.report);
    }
}

BOOST_AUTO_TEST_CASE(dropout_between_layers_with_a_reseeded_generator)
{
    param_store store;
    generator g(10);
    layer_options lo;
    lo.num_layers = 2;
    lo.dropout = 0.4;
    auto l = gru_layer(store, I, H, g, lo);
    generator dropout_rng(0);
    l.train(dropout_rng);
    const gradcheck_result r = check_layer(l, 3, {}, 26, [&] { dropout_rng.seed(99); });
    BOOST_TEST(r.passed, r.report);
}

BOOST_AUTO_TEST_CASE(a_user_written_cell_with_unroll_layers_and_gradcheck)
{
    {
        param_store store;
        generator g(11);
        const mgu_cell cell = mgu_cell::create(store, I, H, g);
        const gradcheck_result r = check_unroll(cell, store, 27);
        BOOST_TEST(r.passed, r.report);
        BOOST_TEST(r.checked == T * B * I + B * H + 2 * (H * I + H * H + H));
    }
    {
        param_store store;
        generator g(12);
        layer_options lo;
        lo.num_layers = 2;
        lo.bidirectional = true;
        const layer<mgu_cell> l("mgu", store, I, H, lo,
                                [&g](param_store& s, std::size_t in, const param_name& n) {
                                    return mgu_cell::create(s, in, H, g, n);
                                });
        BOOST_TEST(store.contains("u_c_l1_reverse"));
        const gradcheck_result r = check_layer(l, 3, {3, 1}, 28);
        BOOST_TEST(r.passed, r.report);
    }
}

BOOST_AUTO_TEST_CASE(a_linear_readout_over_a_whole_sequence)
{
    param_store store;
    generator g(13);
    const auto l = lstm_layer(store, I, H, g);
    const linear out = linear::create(store, H, 2, g, "out.");
    const gradcheck_result r =
        gradcheck([&](tape& t, const std::vector<var>& xs) { return out(t, l(t, xs[0]).output); },
                  {g.uniform({T, B, I}, -1, 1)}, all_of(store));
    BOOST_TEST(r.passed, r.report);
}

BOOST_AUTO_TEST_CASE(additive_and_multiplicative_attention_over_a_masked_memory)
{
    for (attention_kind kind : {attention_kind::additive, attention_kind::multiplicative})
    {
        param_store store;
        generator g(51);
        const attention a = attention::create(store, kind, 3, 2, 4, g);
        const std::vector<tensor> inputs{g.uniform({4, 3, 3}, -1, 1), g.uniform({3, 2}, -1, 1)};
        const gradcheck_result r = gradcheck(
            [&](tape& t, const std::vector<var>& xs) {
                const attention_step s = a(t, a.remember(t, xs[0], {4, 2, 1}), xs[1]);
                return std::vector<var>{s.context, s.weights};
            },
            inputs, all_of(store));
        BOOST_TEST(r.passed, attention_name(kind) << ": " << r.report);
        // memory, query and the parameters: W_k (4, 3), b_k, W_q (4, 2), v (1, 4); or W_a (3, 2)
        BOOST_TEST(r.checked == 36 + 6 + (kind == attention_kind::additive ? 12 + 4 + 8 + 4 : 6));
    }
}

BOOST_AUTO_TEST_CASE(an_encoder_decoder_with_and_without_attention_under_teacher_forcing)
{
    // Two sources of lengths 3 and 2 and targets of 3 steps: BPTT through the decoder, every
    // step's attention, the bridge and both directions of the masked encoder.
    token_batch b;
    b.steps = 3;
    b.batch = 2;
    b.inputs = {0, 0, 2, 3, 4, 1};
    b.targets = {2, 3, 4, 1, 1, token_batch::ignore_index};
    b.source = {3, 2, {2, 3, 4, 4, 3, 0}, {3, 2}};
    for (auto kind : {std::optional<attention_kind>(attention_kind::additive),
                      std::optional<attention_kind>(attention_kind::multiplicative),
                      std::optional<attention_kind>()})
    {
        param_store store;
        generator g(52);
        seq2seq_options o;
        o.source_vocab = o.target_vocab = 5;
        o.embed = 2;
        o.hidden = 3;
        o.attend = kind;
        o.attention_size = 2;
        const auto m =
            make_seq2seq(store, o, g, [&](param_store& s, std::size_t in, layer_options lo) {
                return lstm_layer(s, in, 3, g, lo);
            });
        teacher_forcing teacher;
        const gradcheck_result r = gradcheck(
            [&](tape& t, const std::vector<var>&) {
                const auto run = m.run(t, b, teacher);
                std::vector<var> ys = run.logits;
                ys.insert(ys.end(), run.weights.begin(), run.weights.end());
                return ys;
            },
            {}, all_of(store));
        BOOST_TEST(r.passed, (kind ? attention_name(*kind) : "no attention") << ": " << r.report);
        BOOST_TEST(r.checked == store.element_count());
    }
}

BOOST_AUTO_TEST_SUITE_END()
