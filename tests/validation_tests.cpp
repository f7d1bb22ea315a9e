// Input validation at the public entry points: each bad input gives unfold::error naming what is
// wrong and where (empty sequences, out-of-range token indices, batch mismatches between inputs
// and states, checkpoints of the wrong shapes or truncated, unreadable or non-UTF-8 text files).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/test/unit_test.hpp>
#include <unistd.h>

#include "test_util.hpp"
#include <unfold/framework/checkpoint.hpp>
#include <unfold/models/decoder.hpp>
#include <unfold/models/gru.hpp>
#include <unfold/models/lstm.hpp>
#include <unfold/models/text.hpp>

using namespace unfold;
using unfold::testing::expect_error;

namespace
{
/// The bytes of a checkpoint of a store with w (2, 3) and b (3,).
std::string checkpoint_bytes()
{
    param_store s;
    s.add("w", tensor({{1, 2, 3}, {4, 5, 6}}));
    s.add("b", tensor({7, 8, 9}));
    const std::string path =
        (std::filesystem::temp_directory_path() / ("unfold_validation_" + std::to_string(getpid())))
            .string();
    save_checkpoint(path, s);
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    std::filesystem::remove(path);
    return out.str();
}

bool same_bits(const tensor& a, const tensor& b)
{
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(real)) == 0;
}
} // namespace

BOOST_AUTO_TEST_SUITE(validation)

BOOST_AUTO_TEST_CASE(a_layer_rejects_an_empty_sequence)
{
    param_store store;
    generator g(1);
    const auto gru = gru_layer(store, 3, 4, g);
    tape t;
    expect_error(
        [&] {
            (void)gru(t, t.constant(zeros({0, 2, 3})));
        },
        {"gru layer: input has shape (0, 2, 3)", "(T, B, 3) with T > 0"});
    expect_error([&] { (void)gru(t, std::vector<var>{}); },
                 {"gru layer: the input sequence has no steps"});
}

BOOST_AUTO_TEST_CASE(an_embedding_index_out_of_range_names_the_table_and_position)
{
    param_store store;
    generator g(2);
    const embedding e = embedding::create(store, 10, 4, g, "embed.");
    tape t;
    expect_error(
        [&] {
            (void)e(t, {1, 10, 3});
        },
        {"embedding 'embed.weight' (10, 4): index 10 at position 1 is outside [0, 10)"});
    expect_error([&] { (void)e(t, {0, 1, 2, 99}, {2, 2}); }, {"index 99 at position 3"});
    BOOST_TEST(e(t, {9}).shape() == shape_type({1, 4}));
}

BOOST_AUTO_TEST_CASE(a_decoder_step_with_a_state_of_another_batch_is_rejected)
{
    param_store store;
    generator g(3);
    const auto d = make_decoder(store, 8, 4, 5, 2, g,
                                [&](param_store& s, std::size_t in, const layer_options& lo) {
                                    return gru_layer(s, in, 5, g, lo);
                                });
    tape t;
    auto s = d.zero_state(t, 3);
    expect_error(
        [&] {
            (void)d.step(t, {1, 2}, s);
        },
        {"decoder: 2 tokens (batch 2) but the state of layer 0 has shape (3, 5), not "
         "(2, 5): the batch sizes differ"});
    expect_error([&] { (void)d.step(t, {}, s); }, {"decoder: a step needs at least one token"});
    expect_error(
        [&] {
            (void)d.step(t, {1, 2, 8}, s);
        },
        {"embedding 'embed.weight' (8, 4): index 8 at position 2"});
    BOOST_TEST(d.step(t, {1, 2, 7}, s).shape() == shape_type({3, 8}));
}

BOOST_AUTO_TEST_CASE(an_lstm_projection_must_be_smaller_than_the_hidden_size_and_fit_its_state)
{
    param_store store;
    generator g(4);
    lstm_options o;
    o.proj_size = 4;
    expect_error([&] { (void)lstm_layer(store, 5, 4, g, {}, o); },
                 {"lstm: proj_size 4 must be smaller than hidden_size 4 (as in PyTorch)"});
    o.proj_size = 3;
    const auto l = lstm_layer(store, 5, 4, g, {}, o);
    BOOST_TEST(l.output_size() == 3u);
    tape t;
    const var x = t.constant(zeros({6, 2, 5}));
    expect_error(
        [&] {
            (void)l(t, x, {t.constant(zeros({1, 2, 4})), t.constant(zeros({1, 2, 4}))});
        },
        {"lstm layer: initial state part 0 has shape (1, 2, 4) but the input (6, 2, 5) needs (1, "
         "2, 3) (layers·directions, batch, features of that part)"});
    const layer_result r = l(t, x, {t.constant(zeros({1, 2, 3})), t.constant(zeros({1, 2, 4}))});
    BOOST_TEST(r.output.shape() == shape_type({6, 2, 3}));
    BOOST_TEST(r.c_n().shape() == shape_type({1, 2, 4}));
}

BOOST_AUTO_TEST_CASE(a_decoder_over_a_projected_lstm_reads_out_the_projection)
{
    param_store store;
    generator g(5);
    lstm_options o;
    o.proj_size = 3;
    const auto d = make_decoder(store, 8, 4, 6, 2, g,
                                [&](param_store& s, std::size_t in, const layer_options& lo) {
                                    return lstm_layer(s, in, 6, g, lo, o);
                                });
    BOOST_TEST(store.get("head.weight").shape() == shape_type({8, 3}));
    tape t;
    auto s = d.zero_state(t, 2);
    BOOST_TEST(s[1].h.shape() == shape_type({2, 3}));
    BOOST_TEST(s[1].c.shape() == shape_type({2, 6}));
    BOOST_TEST(d.step(t, {1, 2}, s).shape() == shape_type({2, 8}));
    s[0].h = t.constant(zeros({2, 6}));
    expect_error(
        [&] {
            (void)d.step(t, {1, 2}, s);
        },
        {"decoder: 2 tokens (batch 2) but the state of layer 0 has shape (2, 6), not "
         "(2, 3): the features differ"});
    expect_error(
        [&] {
            param_store other;
            (void)make_decoder(other, 8, 4, 5, 1, g,
                               [&](param_store& s2, std::size_t in, const layer_options& lo) {
                                   return lstm_layer(s2, in, 6, g, lo, o);
                               });
        },
        {"make_decoder: hidden size 5 but make_layer built a layer of hidden size 6"});
}

BOOST_AUTO_TEST_CASE(a_checkpoint_in_memory_is_validated_like_a_file)
{
    const std::string bytes = checkpoint_bytes();
    param_store same;
    same.add("w", zeros({2, 3}));
    same.add("b", zeros({3}));
    load_checkpoint_from_memory(bytes.data(), bytes.size(), same);
    BOOST_TEST(same.get("w").value()(1, 2) == 6);
    BOOST_TEST(same.get("b").value()(0) == 7);

    param_store other;
    other.add("w", tensor({{1, 2}, {3, 4}, {5, 6}}));
    other.add("b", tensor({0.5, 0.25, 0.125}));
    const tensor w0 = other.get("w").value(), b0 = other.get("b").value();
    expect_error([&] { load_checkpoint_from_memory(bytes.data(), bytes.size(), other); },
                 {"checkpoint <memory>: tensor 'w' has shape (2, 3) in the file, but the "
                  "parameter has shape (3, 2)"});
    expect_error(
        [&] {
            load_checkpoint_from_memory(bytes.data(), bytes.size() - 4, other,
                                        extra_tensors::reject, "upload.safetensors");
        },
        {"checkpoint upload.safetensors: tensor 'b': data_offsets [24, 36] lie outside the data "
         "section (32 bytes)"});
    BOOST_TEST(same_bits(other.get("w").value(), w0));
    BOOST_TEST(same_bits(other.get("b").value(), b0));
    expect_error([&] { (void)read_checkpoint_from_memory(bytes.data(), 5); },
                 {"checkpoint <memory>: the file is 5 bytes, too short"});
}

BOOST_AUTO_TEST_CASE(text_files_that_are_not_utf8_or_unreadable_are_reported)
{
    using unfold::text_corpus;
    expect_error([&] { (void)text_corpus::parse(std::string("abc\xc3\x28xyz", 7), "notes.txt"); },
                 {"notes.txt: not valid UTF-8 (byte 0xc3 at offset 3)"});
    expect_error([&] { (void)text_corpus::parse("short", "notes.txt"); },
                 {"notes.txt: only 5 characters; a text needs at least 100"});
    const std::string dir = std::filesystem::temp_directory_path().string();
    expect_error([&] { (void)text_corpus::load(dir); },
                 {"cannot read " + dir + ": it is a directory"});
    expect_error([&] { (void)text_corpus::load("/nonexistent/unfold.txt"); },
                 {"cannot read /nonexistent/unfold.txt: No such file or directory"});
    const text_corpus c = text_corpus::parse(std::string(120, 'a') + "é", "ok.txt");
    BOOST_TEST(c.train.size() + c.valid.size() == 121u);
    BOOST_TEST(c.vocab.size() == 3u + 2u);
}

BOOST_AUTO_TEST_SUITE_END()
