#pragma once
/// Optimisers: update parameter values in place from their accumulated gradients, with PyTorch's
/// semantics (torch.optim 1.13, single parameter group, maximize=False).
///
/// A training step is: zero_grad(), one or more backward calls (gradients accumulate, see
/// Note [Gradient accumulation]), optionally clip (framework/clip.hpp), then step(). The optimiser
/// never modifies gradients: weight decay is added to a copy of the gradient, as PyTorch does.
/// Per-parameter state (momentum buffers, moment estimates) lives in the optimiser, one entry per
/// parameter in the order given; it is created zeroed at construction. Hyperparameters are doubles
/// (as Python floats in PyTorch); bias corrections are computed in double, updates in `real`.

#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/param.hpp>

namespace unfold
{

/// Every parameter of a store, in its order, for handing to an optimiser or a clipping function.
inline std::vector<param> params_of(const param_store& store)
{
    return std::vector<param>(store.begin(), store.end());
}

/// What an optimiser has learnt beyond the parameters, for saving with a training run: its name,
/// step count, learning rate and every state tensor, named "<slot>/<parameter>" (for example
/// "exp_avg/rnn.weight_hh_l0"; the slots are PyTorch's state_dict names).
struct optimizer_state
{
    std::string name;                      ///< the optimiser's name() ("adam", ...)
    std::size_t steps = 0;                 ///< step() calls so far
    double lr = 0;                         ///< the learning rate the next step() uses
    std::map<std::string, tensor> tensors; ///< every state tensor, "<slot>/<parameter>"
};

/// The base of every optimiser: the parameters, the learning rate (which a schedule may change
/// between steps, see framework/schedule.hpp) and the step count. Not copyable: its state belongs
/// to one training run.
class optimizer
{
public:
    optimizer(const optimizer&) = delete;
    optimizer& operator=(const optimizer&) = delete;
    virtual ~optimizer() = default;

    /// One update of every parameter from its current gradient. Throws if a parameter's value no
    /// longer has its declared shape.
    void step()
    {
        ++m_steps;
        for (std::size_t i = 0; i < m_params.size(); ++i)
        {
            param& p = m_params[i];
            UNFOLD_CHECK(p.value().shape() == p.shape() && p.grad().shape() == p.shape(),
                         "{}: parameter '{}' has value shape {} and gradient shape {}, declared "
                         "shape {}",
                         name(), p.name(), shape_str(p.value().shape()),
                         shape_str(p.grad().shape()), shape_str(p.shape()));
            update(i, p.value().data(), p.grad().data(), p.size());
        }
    }

    /// Zeroes the gradient of every parameter this optimiser updates.
    void zero_grad()
    {
        for (auto& p : m_params)
            p.zero_grad();
    }

    /// The learning rate the next step() uses.
    double lr() const { return m_lr; }
    /// Sets the learning rate for the following steps (a schedule calls this); must be ≥ 0.
    void set_lr(double lr)
    {
        UNFOLD_CHECK(lr >= 0, "{}: learning rate {} is negative", name(), lr);
        m_lr = lr;
    }

    /// The number of step() calls so far (PyTorch's per-parameter `step`, t in the formulas).
    std::size_t steps() const { return m_steps; }
    /// The parameters this optimiser updates, in the order given (the order of its state).
    const std::vector<param>& params() const { return m_params; }
    /// The optimiser's name, for error messages ("sgd", "adam", ...).
    virtual const char* name() const = 0;

    /// A copy of the whole state: an optimiser given it by load_state() takes the same next steps.
    optimizer_state state() const
    {
        optimizer_state s{name(), m_steps, m_lr, {}};
        for (const auto& [slot, tensors] : m_slots)
            for (std::size_t i = 0; i < m_params.size(); ++i)
                s.tensors.emplace(slot + "/" + m_params[i].name(), (*tensors)[i]);
        return s;
    }

    /// Replaces the state with `s`, saved by an optimiser of the same kind over parameters of the
    /// same names and shapes. All or nothing: a different optimiser, a missing, misshapen or
    /// unexpected tensor throws unfold::error naming it, and nothing changes.
    void load_state(optimizer_state s)
    {
        UNFOLD_CHECK(s.name == name(), "{}: the saved state is a '{}' optimiser's", name(), s.name);
        UNFOLD_CHECK(s.lr >= 0, "{}: the saved learning rate {} is negative", name(), s.lr);
        std::vector<tensor*> targets;
        std::vector<tensor> values;
        for (const auto& [slot, tensors] : m_slots)
            for (std::size_t i = 0; i < m_params.size(); ++i)
            {
                const std::string key = slot + "/" + m_params[i].name();
                auto found = s.tensors.find(key);
                UNFOLD_CHECK(found != s.tensors.end(), "{}: the saved state has no '{}'", name(),
                             key);
                UNFOLD_CHECK(found->second.shape() == m_params[i].shape(),
                             "{}: the saved '{}' has shape {}, the parameter {}", name(), key,
                             shape_str(found->second.shape()), shape_str(m_params[i].shape()));
                targets.push_back(&(*tensors)[i]);
                values.push_back(std::move(found->second));
                s.tensors.erase(found);
            }
        UNFOLD_CHECK(s.tensors.empty(), "{}: the saved state has '{}', which this optimiser lacks",
                     name(), s.tensors.empty() ? std::string() : s.tensors.begin()->first);
        // Commit: moves only, nothing here can throw.
        for (std::size_t k = 0; k < targets.size(); ++k)
            *targets[k] = std::move(values[k]);
        m_steps = s.steps;
        m_lr = s.lr;
    }

protected:
    /// Takes the parameters (handles: updates reach every copy) and the initial learning rate;
    /// throws on an empty handle.
    optimizer(std::vector<param> params, double lr)
        : m_params(std::move(params))
    {
        for (const auto& p : m_params)
            UNFOLD_CHECK(p.defined(), "optimiser: an empty (default-constructed) parameter handle "
                                      "was given");
        m_lr = lr;
    }

    /// Updates parameter i, whose value and gradient are `n` contiguous elements. Called by
    /// step() after the step count was incremented.
    virtual void update(std::size_t i, real* value, const real* grad, std::size_t n) = 0;

    /// One zeroed state tensor per parameter, shaped like it (or filled with `fill`).
    std::vector<tensor> make_state(real fill = 0) const
    {
        std::vector<tensor> state;
        state.reserve(m_params.size());
        for (const auto& p : m_params)
            state.push_back(full(p.shape(), fill));
        return state;
    }

    /// Declares per-parameter state (from make_state) under its PyTorch name, for state() and
    /// load_state(). The optimiser is neither copyable nor movable, so the pointer stays valid.
    void keep_state(std::string slot, std::vector<tensor>& tensors)
    {
        m_slots.emplace_back(std::move(slot), &tensors);
    }

private:
    std::vector<param> m_params;
    double m_lr = 0;
    std::size_t m_steps = 0;
    std::vector<std::pair<std::string, std::vector<tensor>*>> m_slots;
};

/// Options of sgd (PyTorch's defaults, except that lr, required there, defaults to 0.01).
struct sgd_options
{
    double lr = 0.01;        ///< γ, the initial learning rate; ≥ 0
    double momentum = 0;     ///< μ, ≥ 0; 0 keeps no momentum buffer
    double dampening = 0;    ///< τ: the new gradient enters the momentum buffer scaled by 1 − τ
    double weight_decay = 0; ///< L2 penalty: g ← g + λθ
    bool nesterov = false;   ///< needs momentum > 0 and dampening = 0
};

/// Stochastic gradient descent (torch.optim.SGD):
///   g ← ∇ + λθ;  b ← g at t = 1, else μb + (1 − τ)g;  g ← g + μb (Nesterov) or b;  θ ← θ − γg.
class sgd : public optimizer
{
public:
    /// Throws on negative options, or Nesterov without momentum or with dampening.
    explicit sgd(std::vector<param> params, const sgd_options& options = {})
        : optimizer(std::move(params), options.lr)
        , m_options(options)
    {
        UNFOLD_CHECK(options.lr >= 0 && options.momentum >= 0 && options.weight_decay >= 0,
                     "sgd: lr {}, momentum {} and weight_decay {} must not be negative", options.lr,
                     options.momentum, options.weight_decay);
        UNFOLD_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
                     "sgd: Nesterov momentum requires momentum > 0 and zero dampening (got "
                     "momentum {}, dampening {})",
                     options.momentum, options.dampening);
        if (options.momentum != 0)
        {
            m_buffer = make_state();
            keep_state("momentum_buffer", m_buffer);
        }
    }
    const char* name() const override { return "sgd"; }

protected:
    void update(std::size_t i, real* value, const real* grad, std::size_t n) override
    {
        const real lr = real(this->lr());
        const real wd = real(m_options.weight_decay);
        const real mu = real(m_options.momentum);
        const real keep = real(1 - m_options.dampening);
        const bool first = steps() == 1;
        real* b = m_options.momentum != 0 ? m_buffer[i].data() : nullptr;
        for (std::size_t j = 0; j < n; ++j)
        {
            real g = grad[j] + wd * value[j];
            if (b)
            {
                b[j] = first ? g : mu * b[j] + keep * g;
                g = m_options.nesterov ? g + mu * b[j] : b[j];
            }
            value[j] -= lr * g;
        }
    }

private:
    sgd_options m_options;
    std::vector<tensor> m_buffer; // momentum buffers b, when momentum ≠ 0
};

/// Options of adam and adamw. weight_decay defaults to 0 for adam and 0.01 for adamw, as in
/// PyTorch: construct adamw with adamw_options() to get the latter.
struct adam_options
{
    double lr = 1e-3;        ///< γ, the initial learning rate; ≥ 0
    double beta1 = 0.9;      ///< β₁, decay of the first moment m; in [0, 1)
    double beta2 = 0.999;    ///< β₂, decay of the second moment v; in [0, 1)
    double eps = 1e-8;       ///< ε, added to the denominator; ≥ 0
    double weight_decay = 0; ///< λ, ≥ 0: L2 in the gradient (adam), decoupled (adamw)
};

/// adam_options with AdamW's default weight decay (0.01).
inline adam_options adamw_options()
{
    adam_options o;
    o.weight_decay = 1e-2;
    return o;
}

namespace detail
{
/// Adam's moment update and step, shared by adam and adamw; `l2` is the L2 coefficient added to
/// the gradient (adam's weight decay; 0 for adamw, which decays θ before calling this).
inline void adam_update(const adam_options& o, double lr, std::size_t t, real l2, real* value,
                        const real* grad, real* m, real* v, std::size_t n)
{
    const double bias1 = 1 - std::pow(o.beta1, double(t));
    const double bias2 = 1 - std::pow(o.beta2, double(t));
    const real step_size = real(lr / bias1);
    const real bias2_sqrt = real(std::sqrt(bias2));
    const real b1 = real(o.beta1), b2 = real(o.beta2), eps = real(o.eps);
    for (std::size_t j = 0; j < n; ++j)
    {
        const real g = grad[j] + l2 * value[j];
        m[j] = b1 * m[j] + (1 - b1) * g;
        v[j] = b2 * v[j] + (1 - b2) * g * g;
        value[j] -= step_size * m[j] / (std::sqrt(v[j]) / bias2_sqrt + eps);
    }
}

inline void check_adam_options(const char* name, const adam_options& o)
{
    UNFOLD_CHECK(o.lr >= 0 && o.eps >= 0 && o.weight_decay >= 0,
                 "{}: lr {}, eps {} and weight_decay {} must not be negative", name, o.lr, o.eps,
                 o.weight_decay);
    UNFOLD_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
                 "{}: betas ({}, {}) must lie in [0, 1)", name, o.beta1, o.beta2);
}
} // namespace detail

/// Adam (torch.optim.Adam, amsgrad=False), weight decay as an L2 term in the gradient:
///   g ← ∇ + λθ;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
///   θ ← θ − γ · (m / (1 − β₁ᵗ)) / (√v / √(1 − β₂ᵗ) + ε).
class adam : public optimizer
{
public:
    /// Throws on negative options or betas outside [0, 1).
    explicit adam(std::vector<param> params, const adam_options& options = {})
        : optimizer(std::move(params), options.lr)
        , m_options(options)
    {
        detail::check_adam_options(name(), options);
        m_exp_avg = make_state();
        m_exp_avg_sq = make_state();
        keep_state("exp_avg", m_exp_avg);
        keep_state("exp_avg_sq", m_exp_avg_sq);
    }
    const char* name() const override { return "adam"; }

protected:
    void update(std::size_t i, real* value, const real* grad, std::size_t n) override
    {
        detail::adam_update(m_options, lr(), steps(), real(m_options.weight_decay), value, grad,
                            m_exp_avg[i].data(), m_exp_avg_sq[i].data(), n);
    }

private:
    adam_options m_options;
    std::vector<tensor> m_exp_avg, m_exp_avg_sq; // m and v
};

/// AdamW (torch.optim.AdamW): Adam with decoupled weight decay, applied to θ before the Adam
/// step and not seen by the moments:  θ ← θ(1 − γλ), then Adam with λ = 0.
class adamw : public optimizer
{
public:
    /// Throws on negative options or betas outside [0, 1).
    explicit adamw(std::vector<param> params, const adam_options& options = adamw_options())
        : optimizer(std::move(params), options.lr)
        , m_options(options)
    {
        detail::check_adam_options(name(), options);
        m_exp_avg = make_state();
        m_exp_avg_sq = make_state();
        keep_state("exp_avg", m_exp_avg);
        keep_state("exp_avg_sq", m_exp_avg_sq);
    }
    const char* name() const override { return "adamw"; }

protected:
    void update(std::size_t i, real* value, const real* grad, std::size_t n) override
    {
        const real decay = real(1 - lr() * m_options.weight_decay);
        for (std::size_t j = 0; j < n; ++j)
            value[j] *= decay;
        detail::adam_update(m_options, lr(), steps(), 0, value, grad, m_exp_avg[i].data(),
                            m_exp_avg_sq[i].data(), n);
    }

private:
    adam_options m_options;
    std::vector<tensor> m_exp_avg, m_exp_avg_sq;
};

/// Options of rmsprop (PyTorch's defaults).
struct rmsprop_options
{
    double lr = 1e-2;        ///< γ, the initial learning rate; ≥ 0
    double alpha = 0.99;     ///< α, decay of the squared-gradient average v; ≥ 0
    double eps = 1e-8;       ///< ε, added to the denominator; ≥ 0
    double weight_decay = 0; ///< L2 penalty: g ← g + λθ
    double momentum = 0;     ///< μ, ≥ 0; 0 keeps no momentum buffer
    bool centered = false;   ///< divide by √(v − a²), a the running mean gradient, not √v
};

/// RMSProp (torch.optim.RMSprop):
///   g ← ∇ + λθ;  v ← αv + (1 − α)g²;  centered: a ← αa + (1 − α)g, d = √(v − a²) + ε, else
///   d = √v + ε;  momentum μ > 0: b ← μb + g/d, θ ← θ − γb;  else θ ← θ − γg/d.
class rmsprop : public optimizer
{
public:
    /// Throws on negative options.
    explicit rmsprop(std::vector<param> params, const rmsprop_options& options = {})
        : optimizer(std::move(params), options.lr)
        , m_options(options)
    {
        UNFOLD_CHECK(options.lr >= 0 && options.eps >= 0 && options.weight_decay >= 0 &&
                         options.momentum >= 0 && options.alpha >= 0,
                     "rmsprop: lr {}, alpha {}, eps {}, weight_decay {} and momentum {} must not "
                     "be negative",
                     options.lr, options.alpha, options.eps, options.weight_decay,
                     options.momentum);
        m_square_avg = make_state();
        keep_state("square_avg", m_square_avg);
        if (options.centered)
        {
            m_grad_avg = make_state();
            keep_state("grad_avg", m_grad_avg);
        }
        if (options.momentum > 0)
        {
            m_buffer = make_state();
            keep_state("momentum_buffer", m_buffer);
        }
    }
    const char* name() const override { return "rmsprop"; }

protected:
    void update(std::size_t i, real* value, const real* grad, std::size_t n) override
    {
        const real lr = real(this->lr());
        const real wd = real(m_options.weight_decay);
        const real alpha = real(m_options.alpha), eps = real(m_options.eps);
        const real mu = real(m_options.momentum);
        real* v = m_square_avg[i].data();
        real* a = m_options.centered ? m_grad_avg[i].data() : nullptr;
        real* b = m_options.momentum > 0 ? m_buffer[i].data() : nullptr;
        for (std::size_t j = 0; j < n; ++j)
        {
            const real g = grad[j] + wd * value[j];
            v[j] = alpha * v[j] + (1 - alpha) * g * g;
            real d;
            if (a)
            {
                a[j] = alpha * a[j] + (1 - alpha) * g;
                d = std::sqrt(v[j] - a[j] * a[j]) + eps;
            }
            else
                d = std::sqrt(v[j]) + eps;
            if (b)
            {
                b[j] = mu * b[j] + g / d;
                value[j] -= lr * b[j];
            }
            else
                value[j] -= lr * g / d;
        }
    }

private:
    rmsprop_options m_options;
    std::vector<tensor> m_square_avg, m_grad_avg, m_buffer; // v, a (centered), b (momentum)
};

/// Options of adagrad (PyTorch's defaults).
struct adagrad_options
{
    double lr = 1e-2;                     ///< γ, the initial learning rate; ≥ 0
    double lr_decay = 0;                  ///< η: step t uses γ / (1 + (t − 1)η); ≥ 0
    double weight_decay = 0;              ///< L2 penalty: g ← g + λθ
    double initial_accumulator_value = 0; ///< where the sum of squares s starts; ≥ 0
    double eps = 1e-10;                   ///< ε, added to the denominator; ≥ 0
};

/// Adagrad (torch.optim.Adagrad):
///   g ← ∇ + λθ;  γ̃ = γ / (1 + (t − 1)η);  s ← s + g²;  θ ← θ − γ̃ g / (√s + ε),
/// with s starting at initial_accumulator_value and η the lr_decay.
class adagrad : public optimizer
{
public:
    /// Throws on negative options.
    explicit adagrad(std::vector<param> params, const adagrad_options& options = {})
        : optimizer(std::move(params), options.lr)
        , m_options(options)
    {
        UNFOLD_CHECK(options.lr >= 0 && options.lr_decay >= 0 && options.weight_decay >= 0 &&
                         options.initial_accumulator_value >= 0 && options.eps >= 0,
                     "adagrad: lr {}, lr_decay {}, weight_decay {}, initial_accumulator_value {} "
                     "and eps {} must not be negative",
                     options.lr, options.lr_decay, options.weight_decay,
                     options.initial_accumulator_value, options.eps);
        m_sum = make_state(real(options.initial_accumulator_value));
        keep_state("sum", m_sum);
    }
    const char* name() const override { return "adagrad"; }

protected:
    void update(std::size_t i, real* value, const real* grad, std::size_t n) override
    {
        const real clr = real(lr() / (1 + double(steps() - 1) * m_options.lr_decay));
        const real wd = real(m_options.weight_decay), eps = real(m_options.eps);
        real* s = m_sum[i].data();
        for (std::size_t j = 0; j < n; ++j)
        {
            const real g = grad[j] + wd * value[j];
            s[j] += g * g;
            value[j] -= clr * g / (std::sqrt(s[j]) + eps);
        }
    }

private:
    adagrad_options m_options;
    std::vector<tensor> m_sum; // s
};

} // namespace unfold
