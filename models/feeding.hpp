#pragma once
/// Feeding policies: what a decoder is fed at step t — the observed token y(t−1) (teacher forcing),
/// the model's own previous output (free running), or a scheduled mix of the two (scheduled
/// sampling, Bengio et al. 2015). A policy is a choice of *data*, not a change of the network:
/// models/decoder.hpp runs the same code under every policy and only asks the policy which token
/// index to embed next.
///
/// Note [Fed tokens are data]
/// What a policy returns is a vector of token indices. The decoder embeds them with gather_rows,
/// exactly as it embeds observed tokens, so nothing is differentiated through the choice: an
/// argmax or a sample has no useful gradient, and the loss at step t reaches the earlier steps
/// only through the recurrent state, never through "which token was picked". This is the usual
/// treatment in scheduled sampling (Bengio et al. 2015, section 2.4). A consequence the tests
/// check: under teacher forcing the input of every step is the observed data, so the loss term
/// of step t does not depend on what the model predicted at earlier steps.
///
/// Writing a policy: derive from feeding_policy (begin() once per batch, choose() once per step),
/// or wrap a function with feeding_function. Positions where the previous target is not a
/// prediction (a prompt, padding) are marked closed: the decoder feeds the observed token there
/// whatever the policy returns, so a policy only decides where the model has made a prediction.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/random.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

/// What a policy sees when it chooses the inputs of decoding step t ≥ 1 (step 0 is always fed
/// the observed start token).
struct feed_request
{
    std::size_t step;                         ///< t
    const std::vector<std::size_t>& observed; ///< y(t−1) of each sequence: the teacher's token
    const tensor& logits;               ///< the model's output at t−1, (B, V): a plain value
    const std::vector<bool>& choosable; ///< true where the choice is fed; else the observed token
};

/// The interface of every feeding policy. See Note [Fed tokens are data].
class feeding_policy
{
public:
    virtual ~feeding_policy() = default;
    /// Called before decoding a batch of `batch_size` sequences; `training_step` (0, 1, ...) is
    /// the optimiser's step count, which scheduled policies decay with.
    virtual void begin(std::size_t batch_size, std::size_t training_step) {}
    /// The B token indices to feed at step r.step (entries at closed positions are ignored).
    virtual std::vector<std::size_t> choose(const feed_request& r) = 0;
    /// "teacher", "free", "scheduled", ... for messages.
    virtual std::string name() const = 0;
    /// True when choose() always returns r.observed: every step's input is then known before
    /// decoding, and the decoder runs the whole sequence at once (Note [Whole-sequence decoding]
    /// in models/decoder.hpp) without calling choose().
    virtual bool feeds_observed() const { return false; }
};

/// How a model's own output becomes a token: its argmax, or a draw from softmax(logits / τ).
enum class token_choice
{
    greedy,
    sample
};

/// The token of each row of `logits` (B, V): argmax (ties: the lowest index) when greedy, else
/// a draw from softmax(logits / temperature) with `g` (temperature > 0). With top_k > 0 the draw
/// is among the top_k largest logits only (and any equal to the k-th), renormalised.
inline std::vector<std::size_t> choose_tokens(const tensor& logits, token_choice how,
                                              generator* g = nullptr, double temperature = 1,
                                              std::size_t top_k = 0)
{
    UNFOLD_CHECK(logits.dimension() == 2, "choose_tokens: logits must be (B, V), got {}",
                 shape_str(logits.shape()));
    const std::size_t rows = logits.shape()[0], v = logits.shape()[1];
    std::vector<std::size_t> out(rows);
    for (std::size_t r = 0; r < rows; ++r)
    {
        const real* x = logits.data() + r * v;
        const std::size_t best = std::size_t(std::max_element(x, x + v) - x);
        if (how == token_choice::greedy)
        {
            out[r] = best;
            continue;
        }
        UNFOLD_CHECK(g != nullptr, "choose_tokens: sampling needs a generator");
        UNFOLD_CHECK(temperature > 0, "choose_tokens: temperature {} must be positive",
                     temperature);
        real threshold = -std::numeric_limits<real>::infinity();
        if (top_k > 0 && top_k < v)
        {
            std::vector<real> sorted(x, x + v);
            std::nth_element(sorted.begin(), sorted.begin() + std::ptrdiff_t(top_k - 1),
                             sorted.end(), std::greater<real>());
            threshold = sorted[top_k - 1];
        }
        std::vector<double> p(v);
        double total = 0;
        for (std::size_t j = 0; j < v; ++j)
            total += p[j] =
                x[j] < threshold ? 0.0 : std::exp((double(x[j]) - double(x[best])) / temperature);
        double u = g->next_double() * total;
        out[r] = v - 1;
        for (std::size_t j = 0; j < v; ++j)
            if ((u -= p[j]) < 0)
            {
                out[r] = j;
                break;
            }
    }
    return out;
}

/// Teacher forcing: always the observed y(t−1).
class teacher_forcing final : public feeding_policy
{
public:
    std::vector<std::size_t> choose(const feed_request& r) override { return r.observed; }
    std::string name() const override { return "teacher"; }
    bool feeds_observed() const override { return true; }
};

/// Free running: always the model's own previous output, its argmax or a sample (taken as data,
/// Note [Fed tokens are data]).
class free_running final : public feeding_policy
{
public:
    /// Sampling needs `g` (it must outlive the policy's use); throws without it.
    explicit free_running(token_choice how = token_choice::greedy, generator* g = nullptr,
                          double temperature = 1)
        : m_how(how)
        , m_generator(g)
        , m_temperature(temperature)
    {
        UNFOLD_CHECK(how == token_choice::greedy || g != nullptr,
                     "free_running: sampling needs a generator");
    }
    std::vector<std::size_t> choose(const feed_request& r) override
    {
        return choose_tokens(r.logits, m_how, m_generator, m_temperature);
    }
    std::string name() const override { return "free"; }

private:
    token_choice m_how;
    generator* m_generator;
    double m_temperature;
};

/// A teacher-forcing probability ε_i as a function of the training step i = 0, 1, 2, ...
using teacher_schedule = std::function<double(std::size_t)>;

/// Schedules of the teacher-forcing probability from Bengio et al. (2015), section 2.4.
namespace teacher_schedules
{
/// ε_i = p for every i.
inline teacher_schedule constant(double p)
{
    UNFOLD_CHECK(p >= 0 && p <= 1, "teacher schedule: probability {} is outside [0, 1]", p);
    return [p](std::size_t) { return p; };
}
/// Linear decay: ε_i = max(floor, k − c·i), with 0 ≤ floor ≤ k ≤ 1, c ≥ 0.
inline teacher_schedule linear(double k, double c, double floor = 0)
{
    UNFOLD_CHECK(floor >= 0 && floor <= k && k <= 1 && c >= 0,
                 "linear teacher schedule: needs 0 ≤ floor ({}) ≤ k ({}) ≤ 1 and c ({}) ≥ 0", floor,
                 k, c);
    return [=](std::size_t i) { return std::max(floor, k - c * double(i)); };
}
/// Exponential decay: ε_i = k^i, with 0 < k ≤ 1.
inline teacher_schedule exponential(double k)
{
    UNFOLD_CHECK(k > 0 && k <= 1, "exponential teacher schedule: k = {} must be in (0, 1]", k);
    return [k](std::size_t i) { return std::pow(k, double(i)); };
}
/// Inverse sigmoid decay: ε_i = k / (k + exp(i / k)), with k ≥ 1.
inline teacher_schedule inverse_sigmoid(double k)
{
    UNFOLD_CHECK(k >= 1, "inverse-sigmoid teacher schedule: k = {} must be at least 1", k);
    return [k](std::size_t i) { return k / (k + std::exp(double(i) / k)); };
}
} // namespace teacher_schedules

/// Whether scheduled sampling draws "teacher or model" once per token or once per sequence.
enum class sampling_unit
{
    token,
    sequence
};

/// Scheduled sampling: at training step i, each choosable position is fed the observed token with
/// probability ε_i (schedule(i)) and the model's own output otherwise; the coin is tossed per
/// token, or once per sequence for the whole batch (sampling_unit::sequence). Counts what it fed,
/// so the realised teacher-forcing rate can be compared with the schedule.
class scheduled_sampling final : public feeding_policy
{
public:
    /// Coins, per-sequence draws and samples come from `g`, which must outlive the policy.
    scheduled_sampling(teacher_schedule schedule, generator& g,
                       sampling_unit unit = sampling_unit::token,
                       token_choice how = token_choice::greedy, double temperature = 1)
        : m_schedule(std::move(schedule))
        , m_generator(&g)
        , m_unit(unit)
        , m_how(how)
        , m_temperature(temperature)
    {}

    void begin(std::size_t batch_size, std::size_t training_step) override
    {
        m_probability = m_schedule(training_step);
        UNFOLD_CHECK(m_probability >= 0 && m_probability <= 1,
                     "scheduled_sampling: the schedule gave probability {} at step {}",
                     m_probability, training_step);
        m_sequence_teacher.assign(batch_size, true);
        if (m_unit == sampling_unit::sequence)
            for (std::size_t b = 0; b < batch_size; ++b)
                m_sequence_teacher[b] = m_generator->next_double() < m_probability;
    }

    std::vector<std::size_t> choose(const feed_request& r) override
    {
        const std::size_t batch = r.observed.size();
        if (m_sequence_teacher.size() != batch)
            begin(batch, 0);
        std::vector<std::size_t> fed = r.observed;
        std::vector<std::size_t> own;
        for (std::size_t b = 0; b < batch; ++b)
        {
            if (!r.choosable[b])
                continue;
            const bool teacher = m_unit == sampling_unit::sequence
                                     ? m_sequence_teacher[b]
                                     : m_generator->next_double() < m_probability;
            if (teacher)
            {
                ++m_teacher_fed;
                continue;
            }
            ++m_model_fed;
            if (own.empty())
                own = choose_tokens(r.logits, m_how, m_generator, m_temperature);
            fed[b] = own[b];
        }
        return fed;
    }
    std::string name() const override { return "scheduled"; }

    /// ε at the current batch.
    double probability() const { return m_probability; }
    /// Open positions fed the observed token since the last reset_counts().
    std::size_t teacher_fed() const { return m_teacher_fed; }
    /// Open positions fed the model's output since the last reset_counts().
    std::size_t model_fed() const { return m_model_fed; }
    /// Zeroes both counts.
    void reset_counts() { m_teacher_fed = m_model_fed = 0; }

private:
    teacher_schedule m_schedule;
    generator* m_generator;
    sampling_unit m_unit;
    token_choice m_how;
    double m_temperature;
    double m_probability = 1;
    std::vector<bool> m_sequence_teacher;
    std::size_t m_teacher_fed = 0, m_model_fed = 0;
};

/// A policy written as a function of the request (a user's own policy in one lambda).
class feeding_function final : public feeding_policy
{
public:
    /// What choose() calls: the B tokens for a request.
    using function = std::function<std::vector<std::size_t>(const feed_request&)>;
    /// The policy that calls `f`, named `name` in messages.
    explicit feeding_function(function f, std::string name = "custom")
        : m_f(std::move(f))
        , m_name(std::move(name))
    {}
    std::vector<std::size_t> choose(const feed_request& r) override { return m_f(r); }
    std::string name() const override { return m_name; }

private:
    function m_f;
    std::string m_name;
};

} // namespace unfold
