#pragma once
/// The recurrent words of a site (Note [Sites] in framework/site.hpp): the time step that unroll
/// sets, the layer and direction that a layer sets, and the gate that a cell's gate helper sets,
/// so that anomaly messages and shape errors say "at step 37, layer 1 (reverse), forget gate",
/// and the gradient probe attributes each contribution to its step.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include <unfold/framework/site.hpp>

namespace unfold
{

namespace detail
{
enum recurrent_index : std::size_t
{
    step_index = 0,
    layer_index = 1,
    direction_index = 2 ///< 0 forward, 1 reverse
};

/// "step 37, layer 1 (reverse), forget gate" (the parts that are set).
inline std::string describe_recurrent(const site& s)
{
    std::string out;
    auto add = [&](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
    if (s.index[step_index] >= 0)
        add("step " + std::to_string(s.index[step_index]));
    if (s.index[layer_index] >= 0)
        add("layer " + std::to_string(s.index[layer_index]) +
            (s.index[direction_index] == 1 ? " (reverse)" : ""));
    else if (s.index[direction_index] == 1)
        add("reverse direction");
    if (s.label)
        add(s.label);
    return out;
}

/// The current site with its recurrent description.
inline site recurrent_site()
{
    site s = current_site();
    s.describe = &describe_recurrent;
    return s;
}
} // namespace detail

/// The time step a site was recorded at, or −1 outside any step.
inline std::int64_t step_of(const site& s) { return s.index[detail::step_index]; }
/// The layer a site was recorded in, or −1 outside any layer.
inline std::int64_t layer_of(const site& s) { return s.index[detail::layer_index]; }
/// The gate (or other named part of a cell) a site was recorded in, or null.
inline const char* gate_of(const site& s) { return s.label; }

/// While alive, ops recorded on this thread are labelled with time step `step` (set by unroll).
class step_scope
{
public:
    /// Labels what follows with time step `step`.
    explicit step_scope(std::size_t step)
        : m_scope(with_step(step))
    {}

private:
    static site with_step(std::size_t step)
    {
        site s = detail::recurrent_site();
        s.index[detail::step_index] = static_cast<std::int64_t>(step);
        return s;
    }
    site_scope m_scope;
};

/// While alive, ops recorded on this thread are labelled with `layer` and direction (reverse or
/// not); set by layer<Cell>.
class layer_scope
{
public:
    /// Labels what follows with `layer`, in reverse or not.
    layer_scope(std::size_t layer, bool reverse)
        : m_scope(with_layer(layer, reverse))
    {}

private:
    static site with_layer(std::size_t layer, bool reverse)
    {
        site s = detail::recurrent_site();
        s.index[detail::layer_index] = static_cast<std::int64_t>(layer);
        s.index[detail::direction_index] = reverse ? 1 : 0;
        return s;
    }
    site_scope m_scope;
};

/// Runs f() with every op it records labelled `gate` (a string literal: only the pointer is
/// kept), and returns its result. Cells name their gates through the gate helpers of
/// models/cell.hpp, which call this.
template <class F>
auto label(const char* gate, F&& f)
{
    site s = detail::recurrent_site();
    s.label = gate;
    const site_scope in(s);
    return std::forward<F>(f)();
}

} // namespace unfold
