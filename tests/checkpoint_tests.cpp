// Checkpoints (framework/checkpoint.hpp): round trips, the PyTorch-written fixture, every kind of
// corrupt file (each leaves the model bit-identical), and saves interrupted mid-write.
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <unistd.h>

#include "test_util.hpp"
#include <unfold/framework/checkpoint.hpp>

using namespace unfold;
using unfold::testing::expect_error;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace
{

std::string read_bytes(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void write_bytes(const std::string& path, const std::string& bytes)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    BOOST_REQUIRE(out);
}

std::string le64(std::uint64_t n)
{
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i, n >>= 8)
        out[std::size_t(i)] = char(n & 0xFF);
    return out;
}

template <class T>
std::string le_bytes(std::initializer_list<T> values)
{
    std::string out;
    for (T v : values)
    {
        char b[sizeof(T)];
        std::memcpy(b, &v, sizeof(T)); // the test machine is little-endian (x86-64, arm64)
        out.append(b, sizeof(T));
    }
    return out;
}

/// A raw safetensors file: the length prefix, `header` as given, then `data`.
std::string raw_file(const std::string& header, const std::string& data)
{
    return le64(header.size()) + header + data;
}

bool bit_identical(const tensor& a, const tensor& b)
{
    return a.shape() == b.shape() &&
           (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(real)) == 0);
}

/// A scratch directory, a small store (w (2, 3), b (3,)) and a valid file for it, in F32.
struct scratch
{
    fs::path dir;
    std::string path;
    param_store store;
    std::vector<tensor> before;

    scratch()
    {
        static int n = 0;
        dir = fs::temp_directory_path() /
              ("unfold_checkpoint_tests_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        fs::remove_all(dir);
        fs::create_directories(dir);
        path = (dir / "model.safetensors").string();
        store.add("w", tensor{{0.5, -1.25, 2.0}, {3.5, -0.0, 1e-3}});
        store.add("b", tensor{0.25, -7.0, 42.0});
        for (const auto& p : store)
            before.push_back(p.value());
    }
    ~scratch() { fs::remove_all(dir); }

    /// The header of a valid file for `store` (F32, w then b), to corrupt one field at a time.
    static json good_header()
    {
        return json{{"w", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
                    {"b", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {24, 36}}}},
                    {"__metadata__", {{"cell", "lstm"}}}};
    }
    static std::string good_data()
    {
        return le_bytes<float>({1, 2, 3, 4, 5, 6}) + le_bytes<float>({7, 8, 9});
    }

    void write(const std::string& bytes) const { write_bytes(path, bytes); }
    void write(const json& header, const std::string& data = good_data()) const
    {
        write(raw_file(header.dump(), data));
    }

    bool unchanged() const
    {
        for (std::size_t i = 0; i < store.size(); ++i)
            if (!bit_identical(store[i].value(), before[i]))
                return false;
        return true;
    }

    /// Loading fails with every part in the message, the file's path first, and changes nothing.
    void expect_load_error(std::initializer_list<std::string> parts,
                           extra_tensors extra = extra_tensors::reject)
    {
        expect_error([&] { load_checkpoint(path, store, extra); }, {path});
        expect_error([&] { load_checkpoint(path, store, extra); }, parts);
        BOOST_TEST(unchanged());
    }

    std::vector<std::string> files() const
    {
        std::vector<std::string> names;
        for (const auto& entry : fs::directory_iterator(dir))
            names.push_back(entry.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

} // namespace

BOOST_AUTO_TEST_SUITE(checkpoint)

BOOST_FIXTURE_TEST_CASE(round_trip_is_bit_identical_and_keeps_metadata, scratch)
{
    param_store saved;
    saved.add("weight_ih_l0", tensor{{1.0f / 3, -0.0f, std::numeric_limits<real>::denorm_min()},
                                     {std::numeric_limits<real>::infinity(),
                                      std::numeric_limits<real>::max(), -2.5e-7f}});
    saved.add("bias_ih_l0", tensor{std::numeric_limits<real>::quiet_NaN(), 1e30f});
    saved.add("scalar", tensor(real(0.1)));
    saved.add("empty", tensor(shape_type{0, 4}));
    const checkpoint_metadata metadata{
        {"cell", "lstm"}, {"hidden_size", "4"}, {"note", "ünïcode ✓"}};
    save_checkpoint(path, saved, metadata);

    // The header: our precision's dtype, and padded so the data starts at a multiple of 8.
    const std::string bytes = read_bytes(path);
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    BOOST_TEST((8 + n) % 8 == 0u);
    const json header = json::parse(bytes.substr(8, n));
    BOOST_TEST((header["weight_ih_l0"]["dtype"] == (sizeof(real) == 4 ? "F32" : "F64")));
    BOOST_TEST((header["__metadata__"]["hidden_size"] == "4"));

    param_store loaded;
    for (const auto& p : saved)
        loaded.add(p.name(), full(p.shape(), real(9)));
    const checkpoint_metadata got = load_checkpoint(path, loaded);
    BOOST_TEST((got == metadata));
    for (std::size_t i = 0; i < saved.size(); ++i)
        BOOST_TEST(bit_identical(loaded[i].value(), saved[i].value()), saved[i].name());

    BOOST_TEST((read_checkpoint_metadata(path) == metadata));
    const checkpoint_contents contents = read_checkpoint(path);
    BOOST_TEST((contents.metadata == metadata));
    BOOST_TEST(contents.tensors.size() == 4u);
    BOOST_TEST(bit_identical(contents.tensors.at("bias_ih_l0"), saved.get("bias_ih_l0").value()));
}

BOOST_FIXTURE_TEST_CASE(saving_replaces_the_previous_file_and_leaves_no_temporary, scratch)
{
    save_checkpoint(path, store, {{"step", "1"}});
    store.get("b").value()(1) = real(123);
    save_checkpoint(path, store, {{"step", "2"}});
    param_store other;
    other.add("w", zeros({2, 3}));
    other.add("b", zeros({3}));
    BOOST_TEST(load_checkpoint(path, other).at("step") == "2");
    BOOST_TEST(other.get("b").value()(1) == real(123));
    BOOST_TEST(files() == std::vector<std::string>{"model.safetensors"});
}

BOOST_FIXTURE_TEST_CASE(a_file_written_by_pytorch_loads_with_its_names_and_values, scratch)
{
    // scripts/fixtures/checkpoint.py fixture: torch.manual_seed(2024); nn.LSTM(5, 4).state_dict().
    const std::string fixture =
        std::string(UNFOLD_SOURCE_DIR) + "/tests/fixtures/checkpoint_pytorch_lstm.safetensors";
    param_store lstm;
    lstm.add("weight_ih_l0", zeros({16, 5}));
    lstm.add("weight_hh_l0", zeros({16, 4}));
    lstm.add("bias_ih_l0", zeros({16}));
    lstm.add("bias_hh_l0", zeros({16}));
    const checkpoint_metadata metadata = load_checkpoint(fixture, lstm);
    BOOST_TEST(metadata.at("cell") == "lstm");
    BOOST_TEST(metadata.at("hidden_size") == "4");
    BOOST_TEST(metadata.at("producer").rfind("pytorch ", 0) == 0u);

    // Values as PyTorch printed them (%.9g of float32: exact once parsed as float).
    const tensor& w_ih = lstm.get("weight_ih_l0").value();
    BOOST_TEST(w_ih(0, 0) == real(0.0317158699f));
    BOOST_TEST(w_ih(1, 2) == real(0.120128095f));
    BOOST_TEST(w_ih(15, 4) == real(-0.232789636f));
    const tensor& w_hh = lstm.get("weight_hh_l0").value();
    BOOST_TEST(w_hh(0, 0) == real(0.0451239944f));
    BOOST_TEST(w_hh(1, 2) == real(-0.145126462f));
    BOOST_TEST(w_hh(15, 3) == real(-0.39644891f));
    BOOST_TEST(lstm.get("bias_ih_l0").value()(0) == real(-0.359997571f));
    BOOST_TEST(lstm.get("bias_ih_l0").value()(15) == real(0.0151585937f));
    BOOST_TEST(lstm.get("bias_hh_l0").value()(1) == real(-0.142768085f));
    BOOST_TEST(lstm.get("bias_hh_l0").value()(15) == real(0.357830048f));
    // PyTorch's default init for recurrent layers is uniform in ±1/sqrt(H) = ±0.5.
    for (const auto& p : lstm)
        BOOST_TEST(xt::amax(xt::abs(p.value()))() <= real(0.5));

    // The same file against a model of another size: named tensor, both shapes.
    param_store smaller;
    smaller.add("weight_ih_l0", zeros({12, 5}));
    expect_error([&] { load_checkpoint(fixture, smaller, extra_tensors::ignore); },
                 {fixture, "'weight_ih_l0'", "(16, 5)", "(12, 5)"});
}

BOOST_FIXTURE_TEST_CASE(f64_tensors_are_converted_to_the_build_precision, scratch)
{
    json header = good_header();
    header["w"]["dtype"] = "F64";
    header["w"]["data_offsets"] = {0, 48};
    header["b"]["data_offsets"] = {48, 60};
    write(header, le_bytes<double>({0.1, 2, 3, 4, 5, 6}) + le_bytes<float>({7, 8, 9}));
    load_checkpoint(path, store);
    BOOST_TEST(store.get("w").value()(0, 0) == static_cast<real>(0.1));
    BOOST_TEST(store.get("b").value()(2) == real(9));
}

BOOST_FIXTURE_TEST_CASE(an_f64_value_beyond_the_build_range_is_an_error, scratch)
{
    if (sizeof(real) == 8)
        return; // every double fits
    // The bad value is in b, the store's last parameter: w converts fine first, and must still
    // not be assigned.
    json header = good_header();
    header["b"]["dtype"] = "F64";
    header["b"]["data_offsets"] = {24, 48};
    write(header, le_bytes<float>({1, 2, 3, 4, 5, 6}) + le_bytes<double>({0, -1e300, 3}));
    expect_load_error({"tensor 'b'", "element 1", "-1e+300", "beyond the range of float"});
}

BOOST_FIXTURE_TEST_CASE(missing_file, scratch)
{
    expect_load_error({"no such file"});
    expect_error([&] { read_checkpoint_metadata(path); }, {path, "no such file"});
}

BOOST_FIXTURE_TEST_CASE(a_directory_is_not_a_checkpoint, scratch)
{
    fs::create_directory(path);
    expect_load_error({"not a regular file"});
}

BOOST_FIXTURE_TEST_CASE(file_shorter_than_the_length_prefix, scratch)
{
    write(std::string("\x05\x00\x00", 3));
    expect_load_error({"3 bytes", "too short for the 8-byte header length"});
    write(std::string());
    expect_load_error({"0 bytes", "too short"});
}

BOOST_FIXTURE_TEST_CASE(header_length_beyond_the_file, scratch)
{
    const std::string header = good_header().dump();
    write(le64(header.size() + 100) + header + good_data());
    expect_load_error(
        {"header length " + std::to_string(header.size() + 100), "beyond the end of the file"});
}

BOOST_FIXTURE_TEST_CASE(header_length_above_the_cap, scratch)
{
    write(le64(std::uint64_t(1) << 62) + "{}");
    expect_load_error({"above the 100000000 byte limit"});
    write(le64(checkpoint_max_header_bytes + 1) + "{}");
    expect_load_error({"above the 100000000 byte limit"});
}

BOOST_FIXTURE_TEST_CASE(header_not_valid_json, scratch)
{
    write(raw_file(R"({"w": {"dtype": "F32",)", good_data()));
    expect_load_error({"the header is not valid JSON", "parse error"});
}

BOOST_FIXTURE_TEST_CASE(header_not_utf8, scratch)
{
    std::string header = good_header().dump();
    header.replace(header.find("lstm"), 1, "\xff");
    write(raw_file(header, good_data()));
    expect_load_error({"not valid UTF-8", "0xff"});
    // An overlong encoding of '/' is invalid too, even where JSON would accept the bytes.
    header = good_header().dump();
    header.replace(header.find("lstm"), 1, "\xc0\xaf");
    write(raw_file(header, good_data()));
    expect_load_error({"not valid UTF-8", "0xc0"});
}

BOOST_FIXTURE_TEST_CASE(header_not_an_object, scratch)
{
    write(raw_file("[1, 2, 3]", ""));
    expect_load_error({"the header is an array, not a JSON object"});
}

BOOST_FIXTURE_TEST_CASE(duplicate_key_in_the_header, scratch)
{
    std::string header = good_header().dump();
    header.insert(1, R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)");
    write(raw_file(header, good_data()));
    expect_load_error({"the key 'w' twice"});
}

BOOST_FIXTURE_TEST_CASE(entry_not_an_object, scratch)
{
    json header = good_header();
    header["b"] = 3;
    write(header);
    expect_load_error({"tensor 'b'", "is a number, not an object"});
}

BOOST_FIXTURE_TEST_CASE(entry_with_a_missing_or_unknown_field, scratch)
{
    json header = good_header();
    header["b"].erase("shape");
    write(header);
    expect_load_error({"tensor 'b'", "the field 'shape' is missing"});
    header = good_header();
    header["b"]["strides"] = {1};
    write(header);
    expect_load_error({"tensor 'b'", "unknown field 'strides'"});
}

BOOST_FIXTURE_TEST_CASE(unknown_dtype, scratch)
{
    json header = good_header();
    header["w"]["dtype"] = "F16";
    write(header);
    expect_load_error({"tensor 'w'", "unsupported dtype 'F16'", "F32 and F64"});
    header["w"]["dtype"] = "Q7";
    write(header);
    expect_load_error({"tensor 'w'", "unsupported dtype 'Q7'"});
    header["w"]["dtype"] = 32;
    write(header);
    expect_load_error({"tensor 'w'", "dtype is a number, not a string"});
}

BOOST_FIXTURE_TEST_CASE(bad_dimensions, scratch)
{
    json header = good_header();
    header["w"]["shape"] = {2, -3};
    write(header);
    expect_load_error({"tensor 'w'", "a negative number, not a non-negative integer"});
    header["w"]["shape"] = {2, 3.0};
    write(header);
    expect_load_error({"tensor 'w'", "a fractional number"});
    header["w"]["shape"] = "2x3";
    write(header);
    expect_load_error({"tensor 'w'", "shape is a string, not an array"});
}

BOOST_FIXTURE_TEST_CASE(shape_not_matching_the_byte_range, scratch)
{
    json header = good_header();
    header["w"]["shape"] = {3, 3};
    write(header);
    expect_load_error({"tensor 'w'", "shape (3, 3) of F32 needs 36 bytes", "[0, 24] hold 24"});
    // A product that overflows 64 bits must not wrap around to the right size.
    header["w"]["shape"] = {std::uint64_t(1) << 62, 4, 6};
    write(header);
    expect_load_error({"tensor 'w'", "needs more than 2^64 bytes"});
    header["w"]["shape"] = {(std::uint64_t(1) << 62) + 6};
    write(header); // (2^62 + 6) * 4 bytes wraps around to 24
    expect_load_error({"tensor 'w'", "needs more than 2^64 bytes", "[0, 24] hold 24"});
}

BOOST_FIXTURE_TEST_CASE(offsets_outside_the_data, scratch)
{
    json header = good_header();
    header["b"]["data_offsets"] = {24, 1000036};
    header["b"]["shape"] = {250003};
    write(header);
    expect_load_error({"tensor 'b'", "[24, 1000036] lie outside the data section (36 bytes)"});
    header["b"]["data_offsets"] = {"24", 36};
    write(header);
    expect_load_error({"tensor 'b'", "data_offsets must be two non-negative integers"});
}

BOOST_FIXTURE_TEST_CASE(offsets_not_ordered, scratch)
{
    json header = good_header();
    header["b"]["data_offsets"] = {36, 24};
    write(header);
    expect_load_error({"tensor 'b'", "[36, 24] are not ordered"});
}

BOOST_FIXTURE_TEST_CASE(overlapping_tensors, scratch)
{
    json header = good_header();
    header["b"]["data_offsets"] = {12, 24};
    write(header, good_data().substr(0, 24));
    expect_load_error({"tensors 'w' [0, 24] and 'b' [12, 24] overlap"});
}

BOOST_FIXTURE_TEST_CASE(gap_between_tensors, scratch)
{
    json header = good_header();
    header["b"]["data_offsets"] = {28, 40};
    write(header, good_data() + "abcd");
    expect_load_error({"4 unused bytes [24, 28) before tensor 'b'", "gap"});
}

BOOST_FIXTURE_TEST_CASE(data_size_not_equal_to_the_last_offset, scratch)
{
    write(good_header(), good_data() + "trailing");
    expect_load_error({"the data section is 44 bytes but the tensors end at offset 36"});
}

BOOST_FIXTURE_TEST_CASE(truncated_file, scratch)
{
    save_checkpoint(path, store);
    const std::string bytes = read_bytes(path);
    store.get("w").value().fill(real(5)); // so that a load would be visible
    before[0] = store.get("w").value();
    write(bytes.substr(0, bytes.size() - 4));
    expect_load_error({"tensor 'b'", "lie outside the data section (" +
                                         std::to_string(9 * sizeof(real) - 4) + " bytes)"});
    write(bytes.substr(0, 20));
    expect_load_error({"beyond the end of the file"});
}

BOOST_FIXTURE_TEST_CASE(metadata_not_string_to_string, scratch)
{
    json header = good_header();
    header["__metadata__"]["layers"] = 2;
    write(header);
    expect_load_error({"metadata 'layers' is a number, not a string"});
    header["__metadata__"] = {1, 2};
    write(header);
    expect_load_error({"__metadata__ is an array, not an object"});
}

BOOST_FIXTURE_TEST_CASE(missing_tensor, scratch)
{
    json header = good_header();
    header.erase("b");
    write(header, good_data().substr(0, 24));
    expect_load_error({"missing tensor(s) 'b' (3,) required by the model"});
}

BOOST_FIXTURE_TEST_CASE(unexpected_tensor_is_an_error_unless_ignored, scratch)
{
    json header = good_header();
    header["weight_hh_l7"] = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {36, 40}}};
    write(header, good_data() + le_bytes<float>({10}));
    expect_load_error({"unexpected tensor(s) 'weight_hh_l7'", "extra_tensors::ignore"});
    load_checkpoint(path, store, extra_tensors::ignore);
    BOOST_TEST(store.get("b").value()(2) == real(9));
    BOOST_TEST(store.get("w").value()(1, 2) == real(6));
}

BOOST_FIXTURE_TEST_CASE(shape_mismatch_names_the_tensor_and_both_shapes, scratch)
{
    json header = good_header();
    header["w"]["shape"] = {3, 2};
    write(header);
    expect_load_error(
        {"tensor 'w' has shape (3, 2) in the file, but the parameter has shape (2, 3)"});
}

BOOST_FIXTURE_TEST_CASE(a_valid_hand_written_file_loads, scratch)
{
    // The control for the corruptions above: the uncorrupted file loads.
    write(good_header());
    BOOST_TEST(load_checkpoint(path, store).at("cell") == "lstm");
    BOOST_TEST(store.get("w").value()(1, 2) == real(6));
    BOOST_TEST(store.get("b").value()(0) == real(7));
}

BOOST_FIXTURE_TEST_CASE(an_interrupted_save_leaves_the_previous_checkpoint_intact, scratch)
{
    save_checkpoint(path, store, {{"step", "1"}});
    const std::string previous = read_bytes(path);
    store.get("w").value().fill(real(-1));
    for (std::size_t fail_after :
         {std::size_t(0), std::size_t(5), std::size_t(8), std::size_t(50), previous.size() - 1})
    {
        std::size_t written = 0;
        // Writes the first `fail_after` bytes for real, then fails as a full disk would.
        const detail::checkpoint_writer failing = [&](int fd, const char* data, std::size_t size) {
            const std::size_t now = std::min(size, fail_after - std::min(fail_after, written));
            detail::write_fully(fd, data, now);
            written += now;
            if (now < size)
                throw std::runtime_error("No space left on device (simulated)");
        };
        expect_error(
            [&] {
                detail::save_checkpoint_with(path, store, {{"step", "2"}}, failing);
            },
            {path, "saving failed", "previous file is unchanged", "simulated"});
        BOOST_TEST(written == fail_after);
        BOOST_TEST(read_bytes(path) == previous);
        BOOST_TEST(files() == std::vector<std::string>{"model.safetensors"});
    }
    param_store other;
    other.add("w", zeros({2, 3}));
    other.add("b", zeros({3}));
    BOOST_TEST(load_checkpoint(path, other).at("step") == "1");
    BOOST_TEST(bit_identical(other.get("w").value(), before[0]));
}

BOOST_FIXTURE_TEST_CASE(saving_into_a_missing_directory_fails_cleanly, scratch)
{
    const std::string nowhere = (dir / "no" / "such" / "model.safetensors").string();
    expect_error([&] { save_checkpoint(nowhere, store); },
                 {nowhere, "cannot create the temporary file", "No such file or directory"});
}

BOOST_FIXTURE_TEST_CASE(saving_over_a_directory_fails_and_removes_the_temporary, scratch)
{
    fs::create_directory(path);
    fs::create_directory(fs::path(path) / "keep");
    expect_error([&] { save_checkpoint(path, store); }, {path, "saving failed", "cannot rename"});
    BOOST_TEST(files() == std::vector<std::string>{"model.safetensors"});
}

BOOST_AUTO_TEST_CASE(metadata_values_read_back_exactly_what_was_written_and_nothing_else)
{
    for (const double x : {0.1, 1.0 / 3, 1e-300, 123456.789})
    {
        double back = 0;
        BOOST_TEST_REQUIRE(parse_metadata_value(metadata_text(x), back));
        BOOST_TEST(back == x); // bit for bit: the shortest text that reads back
    }
    std::size_t n = 0;
    BOOST_TEST((parse_metadata_value("18446744073709551615", n) && n == 18446744073709551615ull));
    for (const char* bad : {"", "-1", "+1", " 1", "1e3", "12x", "0x10", "18446744073709551616"})
        BOOST_TEST(!parse_metadata_value(bad, n), bad);
    std::uint32_t small = 0;
    BOOST_TEST(!parse_metadata_value("4294967296", small));
    double d = 0;
    for (const char* bad : {"", "fast", "1.5x", "1,5"})
        BOOST_TEST(!parse_metadata_value(bad, d), bad);

    const checkpoint_metadata m = {{"steps", "7"}, {"lr", "oops"}};
    BOOST_TEST(metadata_value<std::size_t>(m, "steps", "run.safetensors") == 7u);
    expect_error([&] { (void)metadata_value<double>(m, "lr", "run.safetensors"); },
                 {"run.safetensors", "'lr' = 'oops' is malformed"});
    expect_error([&] { (void)metadata_value<std::string>(m, "epoch", "run.safetensors"); },
                 {"run.safetensors", "no 'epoch'"});
}

BOOST_AUTO_TEST_SUITE_END()
