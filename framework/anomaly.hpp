#pragma once
/// Anomaly mode and node labels: where in a recurrent model an op was recorded (time step, layer,
/// direction, gate), and the check that turns the first non-finite value into an error naming the
/// op, its inputs' shapes and that place.
///
/// Note [Anomaly mode]
/// set_anomaly_mode(true) (or an anomaly_guard) makes every apply() check its output and every
/// backward check the input gradients it has just accumulated: the first NaN or ±inf throws
/// unfold::error, e.g.
///     NaN in backward of exp at step 37, layer 1, forget gate: the gradient of input 0 (4, 1)
///     is not finite (first at (2, 0)); inputs: (4, 1)
/// Off (the default) it costs one relaxed atomic load per op and per backward step.
///
/// Labels are a *scope*, not a tag attached afterwards: unroll sets the step, layer sets the layer
/// and direction, and a cell wraps each gate in label("forget gate", [&] { ... }). Every op
/// recorded meanwhile copies this thread's site (a pointer and three ints, no strings) into its
/// node. A tag attached to an op's result would come too late: the op's forward has already run
/// (and, in anomaly mode, already thrown) when the tag arrives. With a scope the forward error is
/// raised by the op that produced the value, at once, and already names the gate; and every op a
/// gate is composed of (a user's activation built from exp and div) carries the gate's name.
/// Sites are recorded whether or not anomaly mode is on, so a backward run in anomaly mode names
/// the gate of a forward that was recorded without it.

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/tensor.hpp>

namespace unfold
{

namespace detail
{
/// Where an op was recorded: -1 (or null) for "not inside one". Copied into every node.
struct site
{
    const char* gate = nullptr;
    std::int64_t step = -1;
    std::int32_t layer = -1;
    std::int32_t direction = -1; ///< 0 forward, 1 reverse
};

/// This thread's current site (set by the scopes below).
inline site& current_site()
{
    UNFOLD_THREAD_LOCAL site current;
    return current;
}

inline std::atomic<bool>& anomaly_flag()
{
    static std::atomic<bool> on{false};
    return on;
}

/// True when every element of `x` is finite.
inline bool all_finite(const tensor& x)
{
    const real* p = x.data();
    for (std::size_t i = 0, n = x.size(); i < n; ++i)
        if (!std::isfinite(p[i]))
            return false;
    return true;
}

/// " at step 37, layer 1 (reverse), forget gate", or "" outside any model.
inline std::string site_str(const site& s)
{
    std::string out;
    auto add = [&](const std::string& part) { out += (out.empty() ? " at " : ", ") + part; };
    if (s.step >= 0)
        add("step " + std::to_string(s.step));
    if (s.layer >= 0)
        add("layer " + std::to_string(s.layer) + (s.direction == 1 ? " (reverse)" : ""));
    else if (s.direction == 1)
        add("reverse direction");
    if (s.gate)
        add(s.gate);
    return out;
}

/// An op's input as an anomaly message describes it.
struct operand
{
    const tensor* value;
    std::string param; ///< the parameter's name for a parameter leaf, else empty
};

/// "NaN" if x holds one, else "inf", and the multi-index of the first non-finite element.
inline std::pair<const char*, std::string> first_non_finite(const tensor& x)
{
    std::size_t first = x.size();
    bool nan = false;
    for (std::size_t i = 0; i < x.size(); ++i)
        if (!std::isfinite(x.data()[i]))
        {
            first = std::min(first, i);
            nan = nan || std::isnan(x.data()[i]);
        }
    shape_type index(x.dimension());
    for (std::size_t a = x.dimension(), rest = first; a-- > 0;)
    {
        index[a] = x.shape()[a] ? rest % x.shape()[a] : 0;
        rest = x.shape()[a] ? rest / x.shape()[a] : 0;
    }
    std::string where = shape_str(index);
    if (index.size() == 1)
        where = "(" + std::to_string(index[0]) + ")";
    return {nan ? "NaN" : "inf", where};
}

/// "(4, 1), parameter 'bias_hh_l1' (16,) [not finite]"
inline std::string operands_str(const std::vector<operand>& inputs)
{
    std::string out;
    for (std::size_t k = 0; k < inputs.size(); ++k)
    {
        out += k ? ", " : "";
        if (!inputs[k].param.empty())
            out += "parameter '" + inputs[k].param + "' ";
        out += shape_str(inputs[k].value->shape());
        if (!all_finite(*inputs[k].value))
            out += " [not finite]";
    }
    return out;
}

[[noreturn]] inline void forward_anomaly(const char* op, const site& where, const tensor& y,
                                         const std::vector<operand>& inputs)
{
    const auto [kind, at] = first_non_finite(y);
    fail(fmt::format("{} in forward of {}{}: the output {} is not finite (first at {}); inputs: {}",
                     kind, op, site_str(where), shape_str(y.shape()), at,
                     operands_str(inputs)));
}

[[noreturn]] inline void backward_anomaly(const char* op, const site& where, std::size_t k,
                                          const tensor& gx, const std::vector<operand>& inputs)
{
    const auto [kind, at] = first_non_finite(gx);
    fail(fmt::format("{} in backward of {}{}: the gradient of input {} {} is not finite (first at "
                     "{}); inputs: {}",
                     kind, op, site_str(where), k, shape_str(gx.shape()), at,
                     operands_str(inputs)));
}
} // namespace detail

/// True while anomaly mode is on (Note [Anomaly mode]).
inline bool anomaly_mode() { return detail::anomaly_flag().load(std::memory_order_relaxed); }

/// Turns anomaly mode on or off for every thread (Note [Anomaly mode]).
inline void set_anomaly_mode(bool on) { detail::anomaly_flag().store(on); }

/// While alive, anomaly mode is `on`; the previous setting comes back at its end.
class anomaly_guard
{
public:
    /// Sets anomaly mode to `on` until the guard ends.
    explicit anomaly_guard(bool on = true)
        : m_previous(anomaly_mode())
    {
        set_anomaly_mode(on);
    }
    ~anomaly_guard() { set_anomaly_mode(m_previous); }
    anomaly_guard(const anomaly_guard&) = delete;
    anomaly_guard& operator=(const anomaly_guard&) = delete;

private:
    bool m_previous;
};

/// While alive, ops recorded on this thread are labelled with time step `step` (set by unroll).
class step_scope
{
public:
    /// Labels with `step` until the scope ends, then restores the previous label.
    explicit step_scope(std::size_t step)
        : m_previous(detail::current_site().step)
    {
        detail::current_site().step = static_cast<std::int64_t>(step);
    }
    ~step_scope() { detail::current_site().step = m_previous; }
    step_scope(const step_scope&) = delete;
    step_scope& operator=(const step_scope&) = delete;

private:
    std::int64_t m_previous;
};

/// While alive, ops recorded on this thread are labelled with `layer` and direction (0 forward,
/// 1 reverse); set by layer<Cell>.
class layer_scope
{
public:
    /// Labels with `layer` and the direction until the scope ends, then restores the previous.
    layer_scope(std::size_t layer, bool reverse)
        : m_layer(detail::current_site().layer)
        , m_direction(detail::current_site().direction)
    {
        detail::current_site().layer = static_cast<std::int32_t>(layer);
        detail::current_site().direction = reverse ? 1 : 0;
    }
    ~layer_scope()
    {
        detail::current_site().layer = m_layer;
        detail::current_site().direction = m_direction;
    }
    layer_scope(const layer_scope&) = delete;
    layer_scope& operator=(const layer_scope&) = delete;

private:
    std::int32_t m_layer;
    std::int32_t m_direction;
};

/// Runs f() with every op it records labelled `gate` (a string literal: only the pointer is
/// kept), and returns its result: `var f = label("forget gate", [&] { return sigma(...); });`.
template <class F>
auto label(const char* gate, F&& f)
{
    struct restore
    {
        const char* previous;
        ~restore() { detail::current_site().gate = previous; }
    } r{detail::current_site().gate};
    detail::current_site().gate = gate;
    return std::forward<F>(f)();
}

} // namespace unfold
