#pragma once
/// A reader for the text fixtures in tests/fixtures/ (reference numbers from PyTorch, written by
/// scripts/fixtures/*.py). The format, one record per line, fields separated by spaces:
///
///     # ...                         a comment; comments and empty lines are ignored
///     config <key> <value>          a configuration value (one word)
///     tensor <name> <ndim> <d0> ... a shape; the next line holds prod(d) numbers, row-major
///     ints <name> <n>               an integer list; the next line holds its n values
///
/// Numbers are printed with %.17g and parsed as double, so a float64 value is read exactly and a
/// float32 value stored through float64 comes back exactly in the float build too. Every error
/// throws unfold::error naming the file and the line or the missing entry.

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unfold/framework/error.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold::testing
{

/// The tensors, integer lists and configuration values of one fixture file, read eagerly.
class fixture
{
public:
    explicit fixture(std::string path)
        : m_path(std::move(path))
    {
        std::ifstream in(m_path);
        UNFOLD_CHECK(in, "fixture {}: cannot open the file", m_path);
        std::string line;
        std::size_t number = 0;
        while (std::getline(in, line))
        {
            ++number;
            const std::vector<std::string> fields = split(line);
            if (fields.empty() || fields[0][0] == '#')
                continue;
            const std::string& kind = fields[0];
            if (kind == "config")
            {
                check(fields.size() == 3, number, "expected 'config <key> <value>'");
                check(m_config.emplace(fields[1], fields[2]).second, number,
                      "config '" + fields[1] + "' given twice");
            }
            else if (kind == "tensor" || kind == "ints")
            {
                check(fields.size() >= 3, number, "expected '" + kind + " <name> <size>...'");
                const std::string& name = fields[1];
                check(!m_tensors.count(name) && !m_ints.count(name), number,
                      "'" + name + "' given twice");
                std::vector<std::size_t> dims;
                std::size_t count = 1;
                if (kind == "tensor")
                {
                    const long ndim = parse_int(fields[2], number);
                    check(ndim >= 0 && std::size_t(ndim) + 3 == fields.size(), number,
                          "tensor '" + name + "': ndim " + fields[2] + " but " +
                              std::to_string(fields.size() - 3) + " dimensions");
                    for (std::size_t k = 3; k < fields.size(); ++k)
                    {
                        const long d = parse_int(fields[k], number);
                        check(d >= 0, number, "tensor '" + name + "': negative dimension");
                        dims.push_back(std::size_t(d));
                        count *= std::size_t(d);
                    }
                }
                else
                {
                    check(fields.size() == 3, number, "expected 'ints <name> <n>'");
                    const long n = parse_int(fields[2], number);
                    check(n >= 0, number, "ints '" + name + "': negative length");
                    count = std::size_t(n);
                }
                std::string values_line;
                ++number;
                check(bool(std::getline(in, values_line)), number,
                      "the values of '" + name + "' are missing (end of file)");
                const std::vector<std::string> values = split(values_line);
                check(values.size() == count, number,
                      "'" + name + "' needs " + std::to_string(count) + " values, the line has " +
                          std::to_string(values.size()));
                if (kind == "tensor")
                {
                    stored s{dims, {}};
                    for (const auto& v : values)
                        s.values.push_back(parse_double(v, number));
                    m_tensors.emplace(name, std::move(s));
                }
                else
                {
                    std::vector<long> list;
                    for (const auto& v : values)
                        list.push_back(parse_int(v, number));
                    m_ints.emplace(name, std::move(list));
                }
            }
            else
                check(false, number,
                      "unknown record '" + kind + "' (expected config, tensor, ints or #)");
        }
    }

    const std::string& path() const { return m_path; }

    bool has(const std::string& name) const { return m_tensors.count(name) || m_ints.count(name); }

    /// The tensor `name`, converted to unfold::real.
    tensor operator[](const std::string& name) const
    {
        auto found = m_tensors.find(name);
        UNFOLD_CHECK(found != m_tensors.end(), "fixture {}: no tensor named '{}'", m_path, name);
        const stored& s = found->second;
        shape_type shape(s.dims.begin(), s.dims.end());
        tensor out(shape);
        for (std::size_t i = 0; i < s.values.size(); ++i)
            out.data()[i] = static_cast<real>(s.values[i]);
        return out;
    }

    /// The integer list `name` (e.g. sequence lengths).
    const std::vector<long>& ints(const std::string& name) const
    {
        auto found = m_ints.find(name);
        UNFOLD_CHECK(found != m_ints.end(), "fixture {}: no integer list named '{}'", m_path, name);
        return found->second;
    }

    /// The configuration value `key` as written.
    const std::string& config(const std::string& key) const
    {
        auto found = m_config.find(key);
        UNFOLD_CHECK(found != m_config.end(), "fixture {}: no config value '{}'", m_path, key);
        return found->second;
    }

    /// True when the fixture gives the configuration value `key`.
    bool has_config(const std::string& key) const { return m_config.count(key) > 0; }

    /// The configuration value `key` as an integer.
    long config_int(const std::string& key) const
    {
        const std::string& text = config(key);
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(text.c_str(), &end, 10);
        UNFOLD_CHECK(errno == 0 && !text.empty() && *end == '\0',
                     "fixture {}: config '{}' is '{}', not an integer", m_path, key, text);
        return v;
    }

    /// The names of every tensor, sorted.
    std::vector<std::string> tensor_names() const
    {
        std::vector<std::string> names;
        for (const auto& [name, s] : m_tensors)
            names.push_back(name);
        return names;
    }

private:
    struct stored
    {
        std::vector<std::size_t> dims;
        std::vector<double> values;
    };

    static std::vector<std::string> split(const std::string& line)
    {
        std::vector<std::string> fields;
        std::istringstream words(line);
        std::string word;
        while (words >> word)
            fields.push_back(word);
        return fields;
    }

    void check(bool ok, std::size_t line, const std::string& what) const
    {
        UNFOLD_CHECK(ok, "fixture {}: line {}: {}", m_path, line, what);
    }

    double parse_double(const std::string& text, std::size_t line) const
    {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(text.c_str(), &end);
        // Underflow (ERANGE with a tiny result) is fine; overflow and trailing text are not.
        check(!text.empty() && *end == '\0' && !(errno == ERANGE && std::abs(v) > 1), line,
              "'" + text + "' is not a number");
        return v;
    }

    long parse_int(const std::string& text, std::size_t line) const
    {
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(text.c_str(), &end, 10);
        check(errno == 0 && *end == '\0', line, "'" + text + "' is not an integer");
        return v;
    }

    std::string m_path;
    std::map<std::string, stored> m_tensors;
    std::map<std::string, std::vector<long>> m_ints;
    std::map<std::string, std::string> m_config;
};

} // namespace unfold::testing
