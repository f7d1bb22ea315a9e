#pragma once
/// The safetensors codec under Unfold's checkpoints (framework/checkpoint.hpp): a header's
/// strict parsing and validation, and the tensors' bytes in and out. Internal but for the types
/// at the top.
///
/// Note [Checkpoint format]
/// Exactly safetensors (https://github.com/huggingface/safetensors):
///
///     8 bytes    N, the header length, unsigned little-endian
///     N bytes    UTF-8 JSON object:
///                  {"<name>": {"dtype": "F32" | "F64", "shape": [d0, ...],
///                              "data_offsets": [begin, end]}, ...,
///                   "__metadata__": {"<key>": "<value>", ...}}
///                padded with spaces so that 8 + N is a multiple of 8
///     the rest   the tensors' bytes, row-major, little-endian; offsets are relative to the start
///                of this section, and the tensors tile it exactly (no gaps, no overlaps)
///
/// Tensors are named after the parameters (PyTorch's names: weight_ih_l0, bias_hh_l1_reverse...).
/// Saving writes the build's precision: F32 in the float build, F64 with UNFOLD_DOUBLE. Loading
/// accepts F32 and F64 in either build and converts to unfold::real: F32 -> double is exact;
/// F64 -> float rounds to nearest, and a finite value beyond float's range is an error (not inf).
/// Other safetensors dtypes (F16, BF16, integers, ...) are rejected.
///
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include <unfold/framework/error.hpp>
#include <unfold/framework/param.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// The free-form string metadata of a checkpoint (safetensors' "__metadata__"): by convention
/// the model's configuration, so `unfold sample` can rebuild the model before loading it.
using checkpoint_metadata = std::map<std::string, std::string>;

/// `value` as metadata text that parse_metadata_value reads back exactly: a string as it is, an
/// integer in decimal digits, a floating-point number in the shortest form that reads back.
template <class T>
std::string metadata_text(const T& value)
{
    if constexpr (std::is_same_v<T, std::string>)
        return value;
    else if constexpr (std::is_floating_point_v<T>)
        return fmt::format("{}", value);
    else
        return std::to_string(value);
}

/// Reads metadata text as metadata_text writes it: into a string as it is, into an unsigned
/// integer only from decimal digits that fit, into a floating-point number only when all of the
/// text is one. False when it does not parse.
template <class T>
bool parse_metadata_value(const std::string& text, T& value)
{
    if constexpr (std::is_same_v<T, std::string>)
    {
        value = text;
        return true;
    }
    else
    {
        static_assert(std::is_floating_point_v<T> || std::is_unsigned_v<T>,
                      "metadata numbers are unsigned integers or floating point");
        if (text.empty())
            return false;
        try
        {
            std::size_t used = 0;
            if constexpr (std::is_floating_point_v<T>)
                value = T(std::stod(text, &used));
            else
            {
                if (text.find_first_not_of("0123456789") != std::string::npos)
                    return false;
                const unsigned long long n = std::stoull(text, &used);
                if (n > std::numeric_limits<T>::max())
                    return false;
                value = T(n);
            }
            return used == text.size();
        }
        catch (const std::exception&) // out of range
        {
            return false;
        }
    }
}

/// Metadata `key` of the checkpoint at `path`, parsed as T (parse_metadata_value); throws
/// unfold::error naming the file and the key when it is missing or malformed.
template <class T>
T metadata_value(const checkpoint_metadata& metadata, const std::string& key,
                 const std::string& path)
{
    const auto found = metadata.find(key);
    UNFOLD_CHECK(found != metadata.end(), "checkpoint {}: no '{}' in its metadata", path, key);
    T value{};
    UNFOLD_CHECK(parse_metadata_value(found->second, value),
                 "checkpoint {}: metadata '{}' = '{}' is malformed", path, key, found->second);
    return value;
}

/// The largest header accepted, as in the reference safetensors implementation.
inline constexpr std::uint64_t checkpoint_max_header_bytes = 100'000'000;

namespace detail
{

/// One tensor as the header describes it.
struct checkpoint_entry
{
    std::string name;
    std::string dtype; // "F32" or "F64"
    shape_type shape;
    std::uint64_t begin{}; // byte range in the data section
    std::uint64_t end{};
};

/// A validated header: entries sorted by offset, tiling [0, data_size) exactly.
struct checkpoint_header
{
    checkpoint_metadata metadata;
    std::vector<checkpoint_entry> entries;
    std::uint64_t data_start{}; // 8 + N
    std::uint64_t data_size{};
};

inline std::size_t dtype_bytes(const std::string& dtype) { return dtype == "F64" ? 8 : 4; }
inline const char* real_dtype() { return sizeof(real) == 8 ? "F64" : "F32"; }

/// Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF). Returns the
/// offset of the first bad byte, or npos.
inline std::size_t invalid_utf8_at(const std::string& s)
{
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n)
    {
        const unsigned char c = p[i];
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c < 0x80)
        {
            ++i;
            continue;
        }
        else if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07;
        else
            return i;
        if (i + len > n)
            return i;
        for (std::size_t k = 1; k < len; ++k)
        {
            if ((p[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        const std::uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
        if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return std::string::npos;
}

/// Parses JSON, rejecting duplicate keys in any object (nlohmann keeps the last one silently).
inline nlohmann::json parse_header_json(const std::string& path, const std::string& text)
{
    using json = nlohmann::json;
    std::vector<std::set<std::string>> keys;
    std::string duplicate;
    json::parser_callback_t track = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start)
            keys.emplace_back();
        else if (event == json::parse_event_t::object_end && !keys.empty())
            keys.pop_back();
        else if (event == json::parse_event_t::key && !keys.empty() &&
                 !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty())
            duplicate = parsed.get<std::string>();
        return true;
    };
    json header;
    try
    {
        header = json::parse(text, track);
    }
    catch (const json::exception& e)
    {
        fail(fmt::format("checkpoint {}: the header is not valid JSON ({})", path, e.what()));
    }
    UNFOLD_CHECK(duplicate.empty(), "checkpoint {}: the header has the key '{}' twice", path,
                 duplicate);
    return header;
}

/// "an array", "a negative number"...: what a JSON value is, for error messages.
inline std::string json_kind(const nlohmann::json& j)
{
    if (j.is_number_float())
        return "a fractional number";
    if (j.is_number_integer() && !j.is_number_unsigned())
        return "a negative number";
    if (j.is_array())
        return "an array";
    if (j.is_object())
        return "an object";
    if (j.is_null())
        return "null";
    return std::string("a ") + j.type_name();
}

/// Checks one header entry and the element count against its byte range.
inline checkpoint_entry parse_entry(const std::string& path, const std::string& name,
                                    const nlohmann::json& j, std::uint64_t data_size)
{
    UNFOLD_CHECK(j.is_object(), "checkpoint {}: tensor '{}': the entry is {}, not an object", path,
                 name, json_kind(j));
    for (const auto& [key, value] : j.items())
        UNFOLD_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
                     "checkpoint {}: tensor '{}': unknown field '{}' (expected dtype, shape and "
                     "data_offsets)",
                     path, name, key);
    for (const char* key : {"dtype", "shape", "data_offsets"})
        UNFOLD_CHECK(j.contains(key), "checkpoint {}: tensor '{}': the field '{}' is missing", path,
                     name, key);

    checkpoint_entry e;
    e.name = name;
    const auto& dtype = j["dtype"];
    UNFOLD_CHECK(dtype.is_string(), "checkpoint {}: tensor '{}': dtype is {}, not a string", path,
                 name, json_kind(dtype));
    e.dtype = dtype.get<std::string>();
    UNFOLD_CHECK(e.dtype == "F32" || e.dtype == "F64",
                 "checkpoint {}: tensor '{}': unsupported dtype '{}' (Unfold reads F32 and F64)",
                 path, name, e.dtype);

    const auto& shape = j["shape"];
    UNFOLD_CHECK(shape.is_array(), "checkpoint {}: tensor '{}': shape is {}, not an array", path,
                 name, json_kind(shape));
    // The element count, with overflow checked: a dimension above the data size is impossible
    // unless another one is zero, so the product stays small or the check below fails.
    std::uint64_t count = 1;
    bool overflow = false;
    for (const auto& d : shape)
    {
        UNFOLD_CHECK(d.is_number_unsigned(),
                     "checkpoint {}: tensor '{}': a dimension is {}, not a non-negative integer",
                     path, name, json_kind(d));
        const std::uint64_t v = d.get<std::uint64_t>();
        e.shape.push_back(std::size_t(v));
        if (v != 0 && count > std::numeric_limits<std::uint64_t>::max() / v)
            overflow = true;
        else
            count *= v;
    }
    if (std::find(e.shape.begin(), e.shape.end(), std::size_t(0)) != e.shape.end())
        count = 0, overflow = false;

    const auto& offsets = j["data_offsets"];
    UNFOLD_CHECK(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                     offsets[1].is_number_unsigned(),
                 "checkpoint {}: tensor '{}': data_offsets must be two non-negative integers "
                 "[begin, end], not {}",
                 path, name, offsets.dump());
    e.begin = offsets[0].get<std::uint64_t>();
    e.end = offsets[1].get<std::uint64_t>();
    UNFOLD_CHECK(e.begin <= e.end,
                 "checkpoint {}: tensor '{}': data_offsets [{}, {}] are not ordered (begin > end)",
                 path, name, e.begin, e.end);
    UNFOLD_CHECK(e.end <= data_size,
                 "checkpoint {}: tensor '{}': data_offsets [{}, {}] lie outside the data section "
                 "({} bytes)",
                 path, name, e.begin, e.end, data_size);
    const std::uint64_t bytes = dtype_bytes(e.dtype);
    overflow = overflow || count > std::numeric_limits<std::uint64_t>::max() / bytes;
    UNFOLD_CHECK(!overflow && count * bytes == e.end - e.begin,
                 "checkpoint {}: tensor '{}': shape {} of {} needs {} bytes, but data_offsets "
                 "[{}, {}] hold {}",
                 path, name, shape_str(e.shape), e.dtype,
                 overflow ? std::string("more than 2^64") : std::to_string(count * bytes), e.begin,
                 e.end, e.end - e.begin);
    return e;
}

/// The bytes of a checkpoint: an open file, or a buffer in memory (load_checkpoint_from_memory,
/// the fuzz target). read() is all-or-nothing.
class checkpoint_source
{
public:
    /// Opens `path` (a regular file) or throws naming it.
    explicit checkpoint_source(const std::string& path)
    {
        std::error_code ec;
        UNFOLD_CHECK(std::filesystem::is_regular_file(path, ec), "checkpoint {}: {}", path,
                     std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
        m_size = std::filesystem::file_size(path, ec);
        UNFOLD_CHECK(!ec, "checkpoint {}: cannot read the file size ({})", path, ec.message());
        m_file.open(path, std::ios::binary);
        UNFOLD_CHECK(m_file, "checkpoint {}: cannot open the file ({})", path,
                     std::strerror(errno));
    }
    /// `size` bytes at `data`, which must outlive the source.
    checkpoint_source(const char* data, std::size_t size)
        : m_data(data)
        , m_size(size)
    {}
    std::uint64_t size() const { return m_size; }
    /// Reads n bytes at `offset` into dst; false if they are not all there.
    bool read(std::uint64_t offset, char* dst, std::size_t n)
    {
        if (offset > m_size || n > m_size - offset)
            return false;
        if (m_data)
        {
            std::copy_n(m_data + offset, n, dst);
            return true;
        }
        m_file.seekg(std::streamoff(offset));
        m_file.read(dst, std::streamsize(n));
        return m_file && std::uint64_t(m_file.gcount()) == n;
    }

private:
    std::ifstream m_file;
    const char* m_data = nullptr;
    std::uint64_t m_size = 0;
};

/// Reads and validates the length prefix and the header of `in` (Note [Checkpoint loading never
/// trusts the file]); reads no tensor data.
inline checkpoint_header read_header(const std::string& path, checkpoint_source& in)
{
    const std::uint64_t file_size = in.size();
    UNFOLD_CHECK(file_size >= 8,
                 "checkpoint {}: the file is {} bytes, too short for the 8-byte header length "
                 "(truncated or not a safetensors file)",
                 path, file_size);

    unsigned char prefix[8];
    UNFOLD_CHECK(in.read(0, reinterpret_cast<char*>(prefix), 8),
                 "checkpoint {}: cannot read the header length", path);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | prefix[i];
    UNFOLD_CHECK(n <= checkpoint_max_header_bytes,
                 "checkpoint {}: the header length {} is above the {} byte limit (corrupt or not a "
                 "safetensors file)",
                 path, n, checkpoint_max_header_bytes);
    UNFOLD_CHECK(n <= file_size - 8,
                 "checkpoint {}: the header length {} goes beyond the end of the file ({} bytes "
                 "after the length; truncated or corrupt)",
                 path, n, file_size - 8);

    std::string text(std::size_t(n), '\0');
    UNFOLD_CHECK(in.read(8, text.data(), std::size_t(n)),
                 "checkpoint {}: cannot read the {} byte header", path, n);
    const std::size_t bad = invalid_utf8_at(text);
    UNFOLD_CHECK(bad == std::string::npos,
                 "checkpoint {}: the header is not valid UTF-8 (byte 0x{:02x} at offset {})", path,
                 static_cast<unsigned char>(text[bad == std::string::npos ? 0 : bad]), bad);
    const nlohmann::json j = parse_header_json(path, text);
    UNFOLD_CHECK(j.is_object(), "checkpoint {}: the header is {}, not a JSON object", path,
                 json_kind(j));

    checkpoint_header h;
    h.data_start = 8 + n;
    h.data_size = file_size - h.data_start;
    for (const auto& [key, value] : j.items())
    {
        if (key == "__metadata__")
        {
            UNFOLD_CHECK(value.is_object(), "checkpoint {}: __metadata__ is {}, not an object",
                         path, json_kind(value));
            for (const auto& [k, v] : value.items())
            {
                UNFOLD_CHECK(v.is_string(), "checkpoint {}: metadata '{}' is {}, not a string",
                             path, k, json_kind(v));
                h.metadata.emplace(k, v.get<std::string>());
            }
            continue;
        }
        h.entries.push_back(parse_entry(path, key, value, h.data_size));
    }

    // The tensors must tile the data section: sorted by offset, each starts where the previous
    // ended, and the last ends at the end of the file.
    std::sort(h.entries.begin(), h.entries.end(), [](const auto& a, const auto& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t expected = 0;
    const checkpoint_entry* previous = nullptr;
    for (const auto& e : h.entries)
    {
        UNFOLD_CHECK(e.begin >= expected,
                     "checkpoint {}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path,
                     previous ? previous->name : "", previous ? previous->begin : 0,
                     previous ? previous->end : 0, e.name, e.begin, e.end);
        UNFOLD_CHECK(e.begin == expected,
                     "checkpoint {}: {} unused bytes [{}, {}) before tensor '{}' (a gap in the "
                     "data section)",
                     path, e.begin - expected, expected, e.begin, e.name);
        expected = e.end;
        previous = &e;
    }
    UNFOLD_CHECK(expected == h.data_size,
                 "checkpoint {}: the data section is {} bytes but the tensors end at offset {} "
                 "(truncated or trailing bytes)",
                 path, h.data_size, expected);
    return h;
}

/// The data section, read whole (its size is bounded by the actual file).
inline std::vector<char> read_data(const std::string& path, checkpoint_source& in,
                                   const checkpoint_header& h)
{
    std::vector<char> data(std::size_t(h.data_size));
    UNFOLD_CHECK(in.read(h.data_start, data.data(), data.size()),
                 "checkpoint {}: cannot read the {} byte data section (did the file change?)", path,
                 h.data_size);
    return data;
}

/// The entry's bytes as an unfold::real tensor (little-endian, converted from F32 or F64).
inline tensor decode(const std::string& path, const checkpoint_entry& e, const char* data)
{
    tensor out(e.shape);
    const auto* p = reinterpret_cast<const unsigned char*>(data + e.begin);
    const std::size_t n = out.size();
    if (e.dtype == "F32")
        for (std::size_t i = 0; i < n; ++i, p += 4)
        {
            std::uint32_t bits = 0;
            for (int k = 3; k >= 0; --k)
                bits = (bits << 8) | p[k];
            float v;
            std::memcpy(&v, &bits, 4);
            out.data()[i] = static_cast<real>(v);
        }
    else
        for (std::size_t i = 0; i < n; ++i, p += 8)
        {
            std::uint64_t bits = 0;
            for (int k = 7; k >= 0; --k)
                bits = (bits << 8) | p[k];
            double v;
            std::memcpy(&v, &bits, 8);
            UNFOLD_CHECK(!std::isfinite(v) ||
                             std::abs(v) <= double(std::numeric_limits<real>::max()),
                         "checkpoint {}: tensor '{}': element {} is {}, beyond the range of {}",
                         path, e.name, i, v, sizeof(real) == 4 ? "float" : "double");
            out.data()[i] = static_cast<real>(v);
        }
    return out;
}

/// `value` as little-endian bytes of the build's precision.
inline void encode(const tensor& value, std::vector<char>& out)
{
    out.resize(value.size() * sizeof(real));
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    for (std::size_t i = 0; i < value.size(); ++i)
    {
        using bits_type = std::conditional_t<sizeof(real) == 8, std::uint64_t, std::uint32_t>;
        bits_type bits;
        const real v = value.data()[i];
        std::memcpy(&bits, &v, sizeof(real));
        for (std::size_t k = 0; k < sizeof(real); ++k, bits >>= 8)
            *p++ = static_cast<unsigned char>(bits & 0xFF);
    }
}

/// A tensor to save and the name to save it under.
struct named_tensor
{
    const std::string* name;
    const tensor* value;
};

/// Every parameter of `store` as a named_tensor, in its order; throws if a value has lost its
/// declared shape.
inline std::vector<named_tensor> named_tensors(const std::string& path, const param_store& store)
{
    std::vector<named_tensor> out;
    for (const auto& p : store)
    {
        UNFOLD_CHECK(p.value().shape() == p.shape(),
                     "checkpoint {}: parameter '{}' has a value of shape {}, declared {}", path,
                     p.name(), shape_str(p.value().shape()), shape_str(p.shape()));
        out.push_back({&p.name(), &p.value()});
    }
    return out;
}

/// The header bytes (length prefix included) for `tensors`, padded to a multiple of 8.
inline std::string encode_header(const std::string& path, const std::vector<named_tensor>& tensors,
                                 const checkpoint_metadata& metadata)
{
    nlohmann::json j = nlohmann::json::object();
    std::uint64_t offset = 0;
    for (const auto& [name, value] : tensors)
    {
        UNFOLD_CHECK(*name != "__metadata__",
                     "checkpoint {}: a tensor cannot be named '__metadata__'", path);
        UNFOLD_CHECK(invalid_utf8_at(*name) == std::string::npos,
                     "checkpoint {}: the tensor name '{}' is not valid UTF-8", path, *name);
        UNFOLD_CHECK(!j.contains(*name), "checkpoint {}: two tensors are named '{}'", path, *name);
        const std::uint64_t bytes = value->size() * sizeof(real);
        j[*name] = {
            {"dtype", real_dtype()},
            {"shape", std::vector<std::uint64_t>(value->shape().begin(), value->shape().end())},
            {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    if (!metadata.empty())
    {
        for (const auto& [k, v] : metadata)
            UNFOLD_CHECK(invalid_utf8_at(k) == std::string::npos &&
                             invalid_utf8_at(v) == std::string::npos,
                         "checkpoint {}: metadata '{}' is not valid UTF-8", path, k);
        j["__metadata__"] = metadata;
    }
    std::string text = j.dump();
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');
    std::string out(8, '\0');
    std::uint64_t n = text.size();
    for (int i = 0; i < 8; ++i, n >>= 8)
        out[std::size_t(i)] = static_cast<char>(n & 0xFF);
    return out + text;
}

} // namespace detail

} // namespace unfold
