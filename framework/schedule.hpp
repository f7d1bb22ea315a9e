#pragma once
/// Learning-rate schedules. A schedule is a plain function from the step (or epoch) index
/// t = 0, 1, 2, ... to a learning rate; it holds no state, so it can be evaluated at any t,
/// printed, tested, and composed (linear_warmup wraps another schedule). Any optimiser follows
/// one with `opt.set_lr(s(t)); opt.step();`.
/// The closed forms are PyTorch's (StepLR, CosineAnnealingLR's closed form, LinearLR).

#include <cmath>
#include <cstddef>
#include <functional>
#include <utility>

#include <unfold/framework/error.hpp>

namespace unfold
{

/// The learning rate at step (or epoch) t, counting from 0.
using schedule = std::function<double(std::size_t)>;

/// lr(t) = base_lr for every t.
inline schedule constant_lr(double base_lr)
{
    UNFOLD_CHECK(base_lr >= 0, "constant_lr: base_lr {} is negative", base_lr);
    return [base_lr](std::size_t) { return base_lr; };
}

/// Step decay (StepLR): lr(t) = base_lr · γ^⌊t / step_size⌋. step_size must be positive.
inline schedule step_decay(double base_lr, std::size_t step_size, double gamma)
{
    UNFOLD_CHECK(base_lr >= 0 && gamma >= 0,
                 "step_decay: base_lr {} and gamma {} must not be negative", base_lr, gamma);
    UNFOLD_CHECK(step_size > 0, "step_decay: step_size must be positive");
    return [=](std::size_t t) { return base_lr * std::pow(gamma, double(t / step_size)); };
}

/// Cosine annealing (CosineAnnealingLR's closed form, one half-period):
///   lr(t) = η_min + (base_lr − η_min)(1 + cos(π t / T_max)) / 2   for t ≤ T_max,
/// and η_min after T_max (PyTorch's closed form would rise again there). t_max must be positive.
inline schedule cosine_annealing(double base_lr, std::size_t t_max, double eta_min = 0)
{
    UNFOLD_CHECK(base_lr >= 0 && eta_min >= 0,
                 "cosine_annealing: base_lr {} and eta_min {} must not be negative", base_lr,
                 eta_min);
    UNFOLD_CHECK(t_max > 0, "cosine_annealing: t_max must be positive");
    return [=](std::size_t t) {
        if (t >= t_max)
            return eta_min;
        constexpr double pi = 3.14159265358979323846;
        return eta_min + (base_lr - eta_min) * (1 + std::cos(pi * double(t) / double(t_max))) / 2;
    };
}

/// Linear warm-up in front of another schedule: for t < warmup_steps the rate rises linearly,
///   lr(t) = after(0) · (t + 1) / warmup_steps,
/// reaching after(0) at t = warmup_steps − 1; from then on lr(t) = after(t − warmup_steps), so the
/// wrapped schedule starts at its own step 0 when the warm-up ends (PyTorch's SequentialLR of
/// LinearLR(start_factor = 1/W, total_iters = W − 1) and `after`, milestone W = warmup_steps).
/// warmup_steps = 0 gives `after` unchanged.
inline schedule linear_warmup(std::size_t warmup_steps, schedule after)
{
    UNFOLD_CHECK(after, "linear_warmup: the wrapped schedule is empty");
    return [warmup_steps, after = std::move(after)](std::size_t t) {
        if (t >= warmup_steps)
            return after(t - warmup_steps);
        return after(0) * double(t + 1) / double(warmup_steps);
    };
}

/// Linear warm-up alone: rises to base_lr over warmup_steps steps as above, then stays at base_lr.
inline schedule linear_warmup(std::size_t warmup_steps, double base_lr)
{
    return linear_warmup(warmup_steps, constant_lr(base_lr));
}

} // namespace unfold
