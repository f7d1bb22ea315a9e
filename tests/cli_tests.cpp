// The `unfold` command on bad input: every bad argument combination, unreadable file, non-UTF-8
// text or corrupt checkpoint gives exactly one line "unfold: ..." naming the culprit on stderr,
// nothing on stdout, and exit status 2 — never a crash or a partial run.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>
#include <unistd.h>

#include "apps/cli.hpp"
#include "test_util.hpp"

using unfold::testing::read_and_close;

namespace
{
/// A file in the temporary directory, removed at the end of the test.
struct scratch_file
{
    std::string path;
    scratch_file(const std::string& name, const std::string& contents)
        : path((std::filesystem::temp_directory_path() /
                ("unfold-cli-" + std::to_string(::getpid()) + "-" + name))
                   .string())
    {
        std::ofstream(path, std::ios::binary) << contents;
    }
    ~scratch_file() { std::filesystem::remove(path); }
};

} // namespace

BOOST_AUTO_TEST_SUITE(cli)

BOOST_AUTO_TEST_CASE(bad_combinations_and_files_give_one_line_and_status_2)
{
    const std::string text(300, 'a');
    const scratch_file empty("empty.txt", "");
    const scratch_file short_text("short.txt", "abc");
    const scratch_file latin1("latin1.txt", "na\xefve " + text);
    const scratch_file truncated_utf8("cut.txt", text + "\xe2\x82");
    const scratch_file not_a_checkpoint("fake.safetensors", "{\"not\": \"safetensors\"}");
    const scratch_file good_text("good.txt", text);
    const std::string dir = std::filesystem::temp_directory_path().string();
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        // combinations the options exclude, values out of range, missing values
        {{"train", "--text", good_text.path, "--task", "copy"}, "--task"},
        {{"eval", "--checkpoint", not_a_checkpoint.path, "--task", "copy", "--text",
          good_text.path},
         "--text"},
        {{"train", "--tbptt", "0"}, "--tbptt"},
        {{"train", "--digits", "10"}, "--digits"},
        {{"train", "--decay-floor", "1.5"}, "--decay-floor"},
        {{"train", "--layers", "0"}, "--layers"},
        {{"train", "--layers", "2", "--dropout", "1"}, "--dropout"},
        {{"train", "--layers", "2", "--dropout", "half"}, "--dropout"},
        {{"train", "--dropout", "0.3"}, "--dropout 0.3 acts between stacked layers"},
        {{"train", "--recurrent-dropout", "-0.1"}, "--recurrent-dropout"},
        {{"train", "--cell", "gru", "--proj-size", "8"},
         "--proj-size projects an LSTM's output; --cell gru has no projection"},
        {{"train", "--cell", "lstm", "--hidden", "16", "--proj-size", "16"},
         "--proj-size 16 must be smaller than --hidden 16"},
        {{"train", "--model", "seq2seq", "--text", good_text.path},
         "a text model is a decoder: --model seq2seq needs a task of prompts and answers"},
        {{"train", "--task", "reverse", "--recurrent-dropout", "0.2"},
         "--recurrent-dropout acts in a decoder alone; --model seq2seq has none"},
        {{"train", "--model", "encoder"}, "--model"},
        {{"train", "--task", "reverse", "--attention", "dot"}, "--attention"},
        {{"sample", "--checkpoint", not_a_checkpoint.path, "--beam", "0"}, "--beam"},
        {{"eval", "--checkpoint", not_a_checkpoint.path, "--beam", "0"}, "--beam"},
        {{"train", "--hidden"}, "--hidden"},
        {{"train", "--epochs", "many"}, "--epochs"},
        {{"train", "sample"}, "sample"},
        {{"sample", "--checkpoint", not_a_checkpoint.path, "--temperature", "0"}, "--temperature"},
        {{"sample", "--checkpoint", not_a_checkpoint.path, "--length", "-1"}, "--length"},
        {{"eval"}, "--checkpoint"},
        {{"train", "--quiet", "extra"}, "extra"},
        // unknown options are named as given, in their order
        {{"train", "--resmue", "x"}, "unfold train does not take --resmue x"},
        {{"train", "--resume", "x"}, "checkpoint x: "},
        {{"train", "--checkpoint-every", "5 min"}, "--checkpoint-every"},
        {{"sample", "--checkpoint", not_a_checkpoint.path, "--nope", "3"},
         "unfold sample does not take --nope 3"},
        {{"train", "--threads", "0"}, "--threads"},
        {{"train", "--bptt-memory", "every:0"}, "every:K needs a whole number of steps K >= 1"},
        {{"train", "--bptt-memory", "lots"}, "--bptt-memory"},
        {{"train", "--feeding", "free", "--bptt-memory", "1G"},
         "--feeding free decodes step by step: use every:K or gemm"},
        {{"train", "--task", "reverse", "--bptt-memory", "1G"}, "with --model seq2seq"},
        // files: empty, too short, not UTF-8 (a Latin-1 byte, a cut multi-byte sequence), a
        // directory, a corrupt checkpoint
        {{"train", "--text", empty.path}, empty.path + ": only 0 characters"},
        {{"train", "--text", short_text.path}, short_text.path + ": only 3 characters"},
        {{"train", "--text", latin1.path},
         latin1.path + ": not valid UTF-8 (byte 0xef at offset 2)"},
        {{"train", "--text", truncated_utf8.path}, truncated_utf8.path + ": not valid UTF-8"},
        {{"train", "--text", dir}, "cannot read " + dir + ": it is a directory"},
        {{"sample", "--checkpoint", dir}, dir},
        {{"sample", "--checkpoint", not_a_checkpoint.path}, not_a_checkpoint.path},
        {{"eval", "--checkpoint", not_a_checkpoint.path}, not_a_checkpoint.path},
    };
    for (const auto& [args, named] : cases)
    {
        std::FILE* out = std::tmpfile();
        std::FILE* err = std::tmpfile();
        const int status = unfold::app::run_cli(args, out, err);
        const std::string o = read_and_close(out), e = read_and_close(err);
        const std::string shown = fmt::format("{}", fmt::join(args, " "));
        BOOST_TEST(status == 2, shown << ": status " << status << ", stderr " << e);
        BOOST_TEST(o.empty(), shown << ": stdout " << o);
        BOOST_TEST(std::count(e.begin(), e.end(), '\n') == 1, shown << ": " << e);
        BOOST_TEST(e.rfind("unfold: ", 0) == 0u, shown << ": " << e);
        BOOST_TEST(e.find(named) != std::string::npos, shown << ": " << e << " lacks " << named);
    }
}

BOOST_AUTO_TEST_CASE(threads_sets_the_most_blas_threads_of_a_training_run)
{
    const scratch_file checkpoint("threads.safetensors", "");
    const int before = unfold::num_threads();
    std::FILE* out = std::tmpfile();
    std::FILE* err = std::tmpfile();
    const int status =
        unfold::app::run_cli({"train", "--threads", "2", "--epochs", "1", "--steps", "2",
                              "--hidden", "8", "--embed", "4", "--batch", "2", "--samples", "0",
                              "--quiet", "--force", "--checkpoint", checkpoint.path},
                             out, err);
    const std::string e = read_and_close(err);
    read_and_close(out);
    const int threads = unfold::num_threads();
    unfold::set_num_threads(before);
    BOOST_TEST(status == 0, e);
    BOOST_TEST(threads == 2);
}

BOOST_AUTO_TEST_SUITE_END()
