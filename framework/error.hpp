#pragma once
/// Errors: everything a user can get wrong throws unfold::error with a message that names the op
/// and the shapes involved. Internal invariants use UNFOLD_ASSERT, which is a bug in Unfold.

#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace unfold
{

/// The one exception type Unfold throws for user errors (bad shapes, stale handles, bad files).
class error : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

/// Throws unfold::error(message): for checks UNFOLD_CHECK cannot express (a message built by a
/// loop, an unknown name after a search).
[[noreturn]] inline void fail(const std::string& message) { throw error(message); }

namespace detail
{
[[noreturn]] inline void assertion_failed(const char* condition, const char* file, int line)
{
    throw std::logic_error(fmt::format("internal error in Unfold: {} ({}:{}); please report it",
                                       condition, file, line));
}
} // namespace detail

} // namespace unfold

/// Throws unfold::error with an fmt-formatted message when `condition` is false.
#define UNFOLD_CHECK(condition, ...)                                                               \
    do                                                                                             \
    {                                                                                              \
        if (!(condition))                                                                          \
            ::unfold::fail(fmt::format(__VA_ARGS__));                                              \
    } while (false)

/// An internal invariant: failing it is a bug in Unfold, not in the caller.
#define UNFOLD_ASSERT(condition)                                                                   \
    do                                                                                             \
    {                                                                                              \
        if (!(condition))                                                                          \
            ::unfold::detail::assertion_failed(#condition, __FILE__, __LINE__);                    \
    } while (false)
