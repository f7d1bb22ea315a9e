#pragma once
/// Grad mode: whether ops record what backward needs (on by default, per thread).

#include <unfold/framework/backend.hpp>

namespace unfold
{

namespace detail
{
inline bool& grad_mode_flag()
{
    UNFOLD_THREAD_LOCAL bool enabled = true;
    return enabled;
}
} // namespace detail

/// True unless a no_grad_guard is alive on this thread.
inline bool grad_enabled() { return detail::grad_mode_flag(); }

/// While alive, ops record values only: no node requires a gradient and no backward is kept
/// (evaluation, sampling, finite differences).
class no_grad_guard
{
public:
    no_grad_guard()
        : m_previous(detail::grad_mode_flag())
    {
        detail::grad_mode_flag() = false;
    }
    ~no_grad_guard() { detail::grad_mode_flag() = m_previous; }
    no_grad_guard(const no_grad_guard&) = delete;
    no_grad_guard& operator=(const no_grad_guard&) = delete;

private:
    bool m_previous;
};

} // namespace unfold
