// The fixture reader (tests/fixture.hpp): a committed PyTorch fixture reads back with its shapes,
// values and config, and every kind of bad file fails with a message naming the file and line.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "fixture.hpp"
#include "test_util.hpp"

using namespace unfold;
using unfold::testing::expect_error;
using unfold::testing::fixture;

namespace
{
const std::string lstm_masked = UNFOLD_SOURCE_DIR "/tests/fixtures/recurrent_lstm_masked.txt";

/// Writes `content` to a fresh file in the temp directory and returns its path.
std::string write_temp(const std::string& name, const std::string& content)
{
    const auto path = std::filesystem::temp_directory_path() /
                      ("unfold_fixture_" + std::to_string(::getpid()) + "_" + name + ".txt");
    std::ofstream(path) << content;
    return path.string();
}
} // namespace

BOOST_AUTO_TEST_SUITE(fixture_reader)

BOOST_AUTO_TEST_CASE(reads_config_ints_and_tensors_of_a_committed_fixture)
{
    const fixture f(lstm_masked);
    BOOST_TEST(f.config("cell") == "lstm");
    BOOST_TEST(f.config_int("layers") == 1);
    BOOST_TEST(f.config_int("masked") == 1);
    BOOST_TEST(f.config_int("hidden_size") == 4);
    BOOST_TEST(f.ints("lengths") == (std::vector<long>{4, 2, 3}), boost::test_tools::per_element());

    const tensor x = f["x"];
    BOOST_TEST(x.shape() == (shape_type{4, 3, 5}), boost::test_tools::per_element());
    // The first and last values as written by the script (float32 numbers printed via float64).
    BOOST_TEST(x(0, 0, 0) == static_cast<real>(-1.9586883783340454));
    BOOST_TEST(x(0, 0, 1) == static_cast<real>(0.7794228196144104));
    BOOST_TEST(f["weight_ih_l0"].shape() == (shape_type{16, 5}), boost::test_tools::per_element());
    BOOST_TEST(f["bias_hh_l0"].shape() == (shape_type{16}), boost::test_tools::per_element());
    BOOST_TEST(f["c_n"].shape() == (shape_type{1, 3, 4}), boost::test_tools::per_element());

    // pad_packed_sequence leaves the steps past each length at zero (lengths 4, 2, 3).
    const tensor out = f["output"];
    for (std::size_t k = 0; k < 4; ++k)
    {
        BOOST_TEST(out(2, 1, k) == 0.0);
        BOOST_TEST(out(3, 1, k) == 0.0);
        BOOST_TEST(out(3, 2, k) == 0.0);
        BOOST_TEST(out(1, 1, k) != 0.0);
    }
    BOOST_TEST(f.has("grad.weight_hh_l0"));
    BOOST_TEST(!f.has("grad.weight_hh_l1"));
}

BOOST_AUTO_TEST_CASE(float32_values_survive_the_text_exactly)
{
    // The script draws in float32 and prints through float64 with %.17g, so every input value is
    // a float: converting to float and back changes nothing, in either build.
    const fixture f(lstm_masked);
    for (const char* name : {"x", "h0", "c0", "weight_ih_l0", "bias_ih_l0", "w_out"})
    {
        const tensor t = f[name];
        for (std::size_t i = 0; i < t.size(); ++i)
            BOOST_TEST(double(t.data()[i]) == double(float(t.data()[i])), name << " at " << i);
    }
}

BOOST_AUTO_TEST_CASE(a_missing_entry_names_the_file_and_the_entry)
{
    const fixture f(lstm_masked);
    expect_error([&] { (void)f["weight_ih_l7"]; },
                 {"recurrent_lstm_masked.txt", "no tensor named 'weight_ih_l7'"});
    expect_error([&] { (void)f.ints("offsets"); }, {"no integer list named 'offsets'"});
    expect_error([&] { (void)f.config("dropout"); }, {"no config value 'dropout'"});
    expect_error([&] { (void)f.config_int("cell"); }, {"config 'cell' is 'lstm', not an integer"});
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_an_error_naming_it)
{
    expect_error([] { fixture f(UNFOLD_SOURCE_DIR "/tests/fixtures/no_such_fixture.txt"); },
                 {"no_such_fixture.txt", "cannot open"});
}

BOOST_AUTO_TEST_CASE(malformed_lines_are_errors_naming_the_line)
{
    const std::string good = "# comment\n\nconfig cell gru\ntensor a 2 2 2\n1 2 3 4.5e-1\n";
    const fixture f(write_temp("good", good));
    BOOST_TEST(f["a"](1, 1) == real(0.45));
    BOOST_TEST(f.config("cell") == "gru");

    const std::string too_few = write_temp("too_few", "tensor a 2 2 2\n1 2 3\n");
    expect_error([&] { fixture{too_few}; }, {too_few, "line 2", "'a' needs 4 values", "has 3"});
    const std::string bad_number = write_temp("bad_number", "config k v\ntensor a 1 2\n1 x2\n");
    expect_error([&] { fixture{bad_number}; }, {"line 3", "'x2' is not a number"});
    const std::string bad_ndim = write_temp("bad_ndim", "tensor a 3 2 2\n1 2 3 4\n");
    expect_error([&] { fixture{bad_ndim}; }, {"line 1", "ndim 3 but 2 dimensions"});
    const std::string eof = write_temp("eof", "ints lengths 3\n");
    expect_error([&] { fixture{eof}; }, {"line 2", "values of 'lengths' are missing"});
    const std::string unknown = write_temp("unknown", "matrix a 2 2\n");
    expect_error([&] { fixture{unknown}; }, {"line 1", "unknown record 'matrix'"});
    const std::string twice = write_temp("twice", "ints n 1\n1\ntensor n 1 1\n2\n");
    expect_error([&] { fixture{twice}; }, {"line 3", "'n' given twice"});
    for (const auto& p : {too_few, bad_number, bad_ndim, eof, unknown, twice})
        std::filesystem::remove(p);
}

BOOST_AUTO_TEST_SUITE_END()
