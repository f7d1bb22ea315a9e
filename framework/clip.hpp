#pragma once
/// Gradient clipping, applied to the accumulated gradients between backward and the optimiser's
/// step(). Both functions modify param::grad() in place and leave values untouched.

#include <algorithm>
#include <cmath>
#include <vector>

#include <unfold/framework/param.hpp>

namespace unfold
{

/// The global L2 norm of the gradients of `params`, over all of them together as one vector,
/// computed in double (not finite when a gradient is NaN or infinite).
inline double grad_norm(const std::vector<param>& params)
{
    double sum = 0;
    for (const auto& p : params)
        for (real g : p.grad())
            sum += double(g) * double(g);
    return std::sqrt(sum);
}

/// Rescales the gradients so that their global L2 norm (over all parameters together, as one
/// vector) is at most `max_norm` — PyTorch's clip_grad_norm_ with norm_type 2: the total norm
/// ‖g‖ is computed in double, and when s = max_norm / (‖g‖ + 1e-6) is below 1 every gradient is
/// multiplied by s. Returns ‖g‖ before clipping. If ‖g‖ is not finite (a NaN or Inf gradient) the
/// gradients are left unchanged and the non-finite norm is returned, so the caller can skip the
/// step (PyTorch would multiply them by NaN instead). Throws if max_norm is negative.
inline double clip_grad_norm(const std::vector<param>& params, double max_norm)
{
    UNFOLD_CHECK(max_norm >= 0, "clip_grad_norm: max_norm {} is negative", max_norm);
    const double total = grad_norm(params);
    const double scale = max_norm / (total + 1e-6);
    if (std::isfinite(total) && scale < 1)
        for (auto p : params)
            p.grad() *= real(scale);
    return total;
}

/// Clamps every gradient element to [−clip, clip] (PyTorch's clip_grad_value_). Throws if clip is
/// negative.
inline void clip_grad_value(const std::vector<param>& params, double clip)
{
    UNFOLD_CHECK(clip >= 0, "clip_grad_value: clip {} is negative", clip);
    const real c = real(clip);
    for (auto p : params)
        for (real& g : p.grad())
            g = std::clamp(g, -c, c);
}

} // namespace unfold
