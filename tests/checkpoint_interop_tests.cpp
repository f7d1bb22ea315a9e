// Checkpoints move between Unfold and PyTorch: models Unfold saved (committed under
// tests/fixtures/) were loaded into torch.nn.LSTM / nn.GRU by scripts/fixtures/checkpoint.py, whose
// outputs on a fixed input are recorded next to them; Unfold, loading the same files, must give
// the same outputs. To regenerate (after a change of format or model):
//   build/tests/unfold_tests --run_test=checkpoint_interop/write_unfold_checkpoints
//   /usr/bin/python3 scripts/fixtures/checkpoint.py run
//   tests/fixtures/unfold_lstm_2layer.safetensors
//       --out tests/fixtures/unfold_lstm_2layer_torch.txt      (one line; the same for
//       unfold_gru_bidir)
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "test_util.hpp"
#include <unfold/framework/checkpoint.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/lstm.hpp>

using namespace unfold;

namespace
{
constexpr std::size_t interop_input_size = 5, interop_hidden_size = 4;

std::string fixture_path(const std::string& file)
{
    return std::string(UNFOLD_SOURCE_DIR) + "/tests/fixtures/" + file;
}

/// Calls f(layer, metadata) with a freshly initialised layer of the named model.
template <class F>
void with_model(const std::string& name, param_store& store, generator& g, F f)
{
    layer_options o;
    if (name == "unfold_lstm_2layer")
    {
        o.num_layers = 2;
        f(lstm_layer(store, interop_input_size, interop_hidden_size, g, o), "lstm", o);
    }
    else
    {
        o.bidirectional = true;
        f(gru_layer(store, interop_input_size, interop_hidden_size, g, o), "gru", o);
    }
}

const char* const interop_models[] = {"unfold_lstm_2layer", "unfold_gru_bidir"};
} // namespace

BOOST_AUTO_TEST_SUITE(checkpoint_interop)

BOOST_AUTO_TEST_CASE(write_unfold_checkpoints, *boost::unit_test::disabled())
{
    for (const std::string name : interop_models)
    {
        param_store store;
        generator g(2026);
        with_model(name, store, g, [&](const auto&, const char* cell, const layer_options& o) {
            save_checkpoint(fixture_path(name + ".safetensors"), store,
                            {{"cell", cell},
                             {"layers", std::to_string(o.num_layers)},
                             {"bidirectional", o.bidirectional ? "1" : "0"},
                             {"input_size", std::to_string(interop_input_size)},
                             {"hidden_size", std::to_string(interop_hidden_size)}});
        });
    }
}

BOOST_AUTO_TEST_CASE(pytorch_gives_the_same_outputs_from_an_unfold_checkpoint)
{
    for (const std::string name : interop_models)
    {
        BOOST_TEST_CONTEXT(name)
        {
            param_store store;
            generator g(1); // different values from the saved ones: the load must replace them
            const testing::fixture torch(fixture_path(name + "_torch.txt"));
            with_model(name, store, g, [&](const auto& model, const char* cell, const auto&) {
                const checkpoint_metadata meta =
                    load_checkpoint(fixture_path(name + ".safetensors"), store);
                BOOST_TEST(meta.at("cell") == cell);
                BOOST_TEST(torch.config("cell") == cell);
                tape t;
                const layer_result r = model(t, t.constant(torch["x"]));
                // Built by emplace_back: from an initializer list, g++ 12 -O3 warned
                // (-Warray-bounds) about the list's array when a third entry was appended.
                std::vector<std::pair<const char*, var>> outputs;
                outputs.reserve(3);
                outputs.emplace_back("output", r.output);
                outputs.emplace_back("h_n", r.h_n());
                if (torch.has("c_n"))
                    outputs.emplace_back("c_n", r.c_n());
                for (const auto& [key, value] : outputs)
                {
                    const tensor expected = torch[key];
                    const double scale = 1 + xt::amax(xt::abs(expected))();
                    BOOST_TEST(testing::max_abs_diff(value.value(), expected) <= 1e-5 * scale,
                               key << " differs from PyTorch's");
                }
            });
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
