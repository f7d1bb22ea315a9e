// Sites in a recurrent model (Note [Sites]): the decoder opens the step and layer scopes that
// unroll and layer open, a shape error raised while recording a cell names its step, layer and
// gate, and the decoder honours its layer's dropout between stacked cells.
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "test_util.hpp"
#include <unfold/models/decoder.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/layer.hpp>
#include <unfold/ops/matmul.hpp>
#include <unfold/ops/mul.hpp>

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::max_abs_diff;

namespace
{
/// A user's cell whose "mixing" gate multiplies by a weight of the wrong shape from step 2 on.
struct mismatched_cell
{
    using state = var;
    param w;       ///< (H, H)
    param w_wrong; ///< (H + 1, H): cannot multiply h (B, H)
    state operator()(tape& t, const var& x, const state& h) const
    {
        const bool late = step_of(current_site()) >= 2;
        return label("mixing gate", [&] { return matmul(h, t[late ? w_wrong : w]) + x; });
    }
};

decoder<gru_cell> two_layer_decoder(param_store& store, generator& g, real dropout)
{
    return make_decoder(store, 8, 4, 6, 2, g,
                        [&](param_store& s, std::size_t in, layer_options lo) {
                            lo.dropout = dropout;
                            return gru_layer(s, in, 6, g, lo);
                        });
}

token_batch small_batch()
{
    token_batch b;
    b.steps = 3;
    b.batch = 2;
    b.inputs = {1, 1, 3, 4, 5, 6};
    b.targets = {3, 4, 5, 6, 2, 2};
    return b;
}
} // namespace

BOOST_AUTO_TEST_SUITE(sites)

BOOST_AUTO_TEST_CASE(a_shape_error_inside_a_layer_names_the_step_layer_and_gate)
{
    param_store store;
    const std::size_t H = 3;
    const mismatched_cell cell{store.add("w", zeros({H, H})),
                               store.add("w_wrong", zeros({H + 1, H}))};
    layer<mismatched_cell> l("mixing", store, H, H, layer_options{},
                             [&](param_store&, std::size_t, const param_name&) { return cell; });
    tape t;
    const var x = t.constant(zeros({4, 2, H}));
    expect_error([&] { (void)l(t, x); }, {"matmul: cannot multiply shapes (2, 3) and (4, 3)",
                                          "(recorded at step 2, layer 0, mixing gate)"});
    // Outside any model the message is the op's own.
    expect_error(
        [&] {
            (void)matmul(t.constant(zeros({2, 3})), t.constant(zeros({4, 3})));
        },
        {"matmul: cannot multiply shapes (2, 3) and (4, 3)"});
    try
    {
        (void)matmul(t.constant(zeros({2, 3})), t.constant(zeros({4, 3})));
    }
    catch (const error& e)
    {
        BOOST_TEST(std::string(e.what()).find("recorded") == std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(the_decoder_records_every_step_and_layer_of_its_cells)
{
    param_store store;
    generator g(7);
    const decoder<gru_cell> d = two_layer_decoder(store, g, 0);
    // "step/layer" of every update gate, in recording order (a gate is several nodes).
    auto gates_seen = [&](feeding_policy& policy) {
        std::vector<std::string> seen;
        tape t;
        const auto r = d.run(t, small_batch(), policy);
        for (const auto& n : detail::core_of(r.logits.back()).nodes)
            if (gate_of(n.where) && std::string(gate_of(n.where)) == "update gate")
            {
                const std::string at = fmt::format("{}/{}", step_of(n.where), layer_of(n.where));
                if (seen.empty() || seen.back() != at)
                    seen.push_back(at);
            }
        return seen;
    };
    // Step by step under a policy that chooses, layer by layer under teacher forcing (Note
    // [Whole-sequence decoding]): every step of every layer is named either way.
    free_running greedy;
    const std::vector<std::string> step_major{"0/0", "0/1", "1/0", "1/1", "2/0", "2/1"};
    BOOST_TEST(gates_seen(greedy) == step_major, boost::test_tools::per_element());
    teacher_forcing teacher;
    const std::vector<std::string> layer_major{"0/0", "1/0", "2/0", "0/1", "1/1", "2/1"};
    BOOST_TEST(gates_seen(teacher) == layer_major, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(the_decoder_applies_its_layer_dropout_in_training_mode_only)
{
    auto logits = [](real dropout, bool training) {
        param_store store;
        generator g(11);
        decoder<gru_cell> d = two_layer_decoder(store, g, dropout);
        generator masks(5);
        if (training)
            d.train(masks);
        teacher_forcing teacher;
        tape t;
        return d.run(t, small_batch(), teacher).logits.back().value();
    };
    const tensor plain = logits(0, true);
    BOOST_TEST(max_abs_diff(logits(real(0.5), false), plain) == 0.0); // evaluation: none
    BOOST_TEST(max_abs_diff(logits(real(0.5), true), plain) > 1e-3);  // training: dropped
    BOOST_TEST(max_abs_diff(logits(real(0.5), true), logits(real(0.5), true)) == 0.0); // seeded
}

BOOST_AUTO_TEST_CASE(unroll_selects_the_steps_of_a_whole_sequence_outside_every_step)
{
    param_store store;
    const std::size_t H = 3;
    const mismatched_cell cell{store.add("w", zeros({H, H})),
                               store.add("w_wrong", zeros({H + 1, H}))};
    tape t;
    const var x = t.variable(zeros({2, 2, H})); // two steps: the cell's weights fit both
    (void)unroll(cell, t, x, t.constant(zeros({2, H})));
    std::size_t selects = 0;
    for (const auto& n : detail::core_of(x).nodes)
        if (n.fn && std::string(n.fn->name()) == "select")
        {
            ++selects;
            BOOST_TEST(step_of(n.where) == -1); // data, not a step's computation
        }
    BOOST_TEST(selects == 2);
}

BOOST_AUTO_TEST_SUITE_END()
