#pragma once
/// Sites: where an op was recorded, as the code that recorded it describes it.
///
/// Note [Sites]
/// Every node copies this thread's current site when its op is recorded, and the engine prints it
/// in the messages of errors raised while recording (a shape error) and of anomaly mode
/// (Note [Anomaly mode]). A site is opaque to the engine: a few integers and a label whose meaning
/// belongs to whoever set them, and a function that describes them in words. Code that records ops
/// in a structure of its own opens a site_scope around each part of it (models/ names the time
/// step, layer, direction and gate: models/site.hpp); every op recorded meanwhile carries the
/// site. A scope, not a tag attached to a result afterwards: an op's forward has already run (and
/// may have thrown) when its result exists. Sites are recorded whether or not anomaly mode is on,
/// and cost a copy of a few words per node.

#include <array>
#include <cstdint>
#include <string>

#include <unfold/framework/backend.hpp>

namespace unfold
{

/// Where an op was recorded: fields whose meaning belongs to the code that set them.
struct site
{
    /// Describes a site in words for messages ("step 37, layer 1, forget gate"); "" says nothing.
    using describer = std::string (*)(const site&);

    std::array<std::int64_t, 3> index{-1, -1, -1}; ///< integers, −1 where unset
    const char* label = nullptr;                   ///< a string literal (only the pointer is kept)
    describer describe = nullptr;                  ///< null: the site is not described

    /// The site in words, or "" when nothing describes it.
    std::string str() const { return describe ? describe(*this) : std::string(); }
};

namespace detail
{
inline site& current_site_slot()
{
    UNFOLD_THREAD_LOCAL site current;
    return current;
}
} // namespace detail

/// This thread's current site: what an op recorded now copies into its node.
inline const site& current_site() { return detail::current_site_slot(); }

/// " at <the site in words>", or "" for a site that says nothing: the suffix messages append.
inline std::string at_site(const site& s)
{
    const std::string words = s.str();
    return words.empty() ? words : " at " + words;
}

/// While alive, this thread's current site is the one given; the previous one comes back at its
/// end (scopes nest).
class site_scope
{
public:
    /// Makes `s` the current site.
    explicit site_scope(const site& s)
        : m_previous(detail::current_site_slot())
    {
        detail::current_site_slot() = s;
    }
    ~site_scope() { detail::current_site_slot() = m_previous; }
    site_scope(const site_scope&) = delete;
    site_scope& operator=(const site_scope&) = delete;

private:
    site m_previous;
};

} // namespace unfold
