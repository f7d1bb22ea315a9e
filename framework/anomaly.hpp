#pragma once
/// Anomaly mode: the check that turns the first non-finite value into an error naming the op, its
/// inputs' shapes and the site where it was recorded (Note [Sites] in framework/site.hpp).
///
/// Note [Anomaly mode]
/// set_anomaly_mode(true) (or an anomaly_guard) makes every apply() check its output and every
/// backward check the input gradients it has just accumulated: the first NaN or ±inf throws
/// unfold::error, e.g.
///     NaN in backward of exp at step 37, layer 1, forget gate: the gradient of input 0 (4, 1)
///     is not finite (first at (2, 0)); inputs: (4, 1)
/// Off (the default) it costs one relaxed atomic load per op and per backward step. Sites are
/// recorded whether or not it is on, so a backward run in anomaly mode names the site of a
/// forward that was recorded without it.

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/site.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

namespace detail
{
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

/// An op's input as an anomaly message describes it.
struct operand
{
    const tensor* value; ///< null when a memory policy dropped it (Note [Recomputation])
    shape_type shape;    ///< the value's shape, dropped or not
    std::string param;   ///< the parameter's name for a parameter leaf, else empty
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
        out += shape_str(inputs[k].shape);
        if (inputs[k].value && !all_finite(*inputs[k].value))
            out += " [not finite]";
    }
    return out;
}

[[noreturn]] inline void forward_anomaly(const char* op, const site& where, const tensor& y,
                                         const std::vector<operand>& inputs)
{
    const auto [kind, at] = first_non_finite(y);
    fail(fmt::format("{} in forward of {}{}: the output {} is not finite (first at {}); inputs: {}",
                     kind, op, at_site(where), shape_str(y.shape()), at, operands_str(inputs)));
}

[[noreturn]] inline void backward_anomaly(const char* op, const site& where, std::size_t k,
                                          const tensor& gx, const std::vector<operand>& inputs)
{
    const auto [kind, at] = first_non_finite(gx);
    fail(fmt::format("{} in backward of {}{}: the gradient of input {} {} is not finite (first at "
                     "{}); inputs: {}",
                     kind, op, at_site(where), k, shape_str(gx.shape()), at, operands_str(inputs)));
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

} // namespace unfold
