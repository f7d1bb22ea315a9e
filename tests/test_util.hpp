#pragma once
/// Helpers shared by the tests.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>

#include <boost/test/unit_test.hpp>

#include <unfold/framework/tensor.hpp>

namespace unfold::testing
{

/// Runs `f`, expecting unfold::error whose message contains every one of `parts`.
inline void expect_error(const std::function<void()>& f, std::initializer_list<std::string> parts)
{
    try
    {
        f();
    }
    catch (const unfold::error& e)
    {
        const std::string message = e.what();
        for (const auto& part : parts)
            BOOST_TEST(message.find(part) != std::string::npos,
                       "message \"" << message << "\" lacks \"" << part << "\"");
        return;
    }
    BOOST_ERROR("expected unfold::error mentioning " << *parts.begin());
}

/// Everything written to the temporary file `f` (e.g. a captured stdout), which is then closed.
inline std::string read_and_close(std::FILE* f)
{
    std::rewind(f);
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
        s.append(buf, n);
    std::fclose(f);
    return s;
}

/// True when no element is NaN or infinite.
inline bool all_finite(const tensor& t)
{
    for (real v : t)
        if (!std::isfinite(v))
            return false;
    return true;
}

/// max |a - b| over all elements (shapes must match).
inline double max_abs_diff(const tensor& a, const tensor& b)
{
    BOOST_REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::abs(double(a.data()[i]) - double(b.data()[i])));
    return m;
}

} // namespace unfold::testing
