#pragma once
/// The gradient-flow probe: during an ordinary backward over an unrolled sequence, how much
/// gradient reaches each time step's state, and how much each step contributes to every shared
/// parameter's gradient.
///
/// Note [Gradient probe]
/// Backpropagation through time gives a shared parameter W the sum of one contribution per use:
/// ∂L/∂W = Σ_k (step k's share). The tape already computes each share — it is what the op of
/// step k adds into W's gradient (Note [Gradient accumulation]) — but only the sum is kept. While
/// a probe is attached, the engine hands each op a scratch slot for a parameter's gradient, adds
/// it in afterwards and shows it to the probe with the site (step, layer) the op was recorded at
/// (Note [Anomaly mode]); the parameters' gradients are exactly what they are without a probe.
/// The state gradients ∂L/∂s_k come from gradient hooks (var::register_hook) on the states of
/// the unroll. unroll skips the one-GEMM input projection while a probe is attached (Note [Input
/// projection]), so the input weights' shares belong to single steps too; the values computed
/// are the same up to rounding.
///
///     tape t;
///     gradient_probe probe(t);                       // before the forward: see above
///     auto states = unroll(cell, t, xs, s0);
///     probe.watch(states);
///     t.backward(loss(states));
///     probe.print(std::cout, {cell.weight_hh});      // step, |dL/dh_k|, |share of weight_hh|
///
/// The probe must not outlive its tape (declare it after the tape). Shares add up over backward
/// calls, as parameter gradients do; the state norms are those of the latest backward.

#include <cmath>
#include <memory>
#include <ostream>
#include <string>
#include <unordered_map>
#include <vector>

#include <unfold/framework/tape.hpp>
#include <unfold/models/cell.hpp>

namespace unfold
{

/// ‖g‖₂, summed in double.
inline double l2_norm(const tensor& g)
{
    double s = 0;
    for (const real v : g)
        s += double(v) * double(v);
    return std::sqrt(s);
}

/// Records, in every backward of its tape, each step's share of every bound parameter's gradient
/// and the norms of watched states' gradients (Note [Gradient probe]). Must not outlive the tape.
class gradient_probe final : private contribution_recorder
{
public:
    /// Attaches to `t`: record the forward after this, then watch() its states.
    explicit gradient_probe(tape& t)
        : m_tape(t)
        , m_records(std::make_shared<records>())
    {
        UNFOLD_CHECK(!t.records_contributions(), "gradient_probe: this tape already has a probe");
        t.set_recorder(this);
    }
    ~gradient_probe() { m_tape.set_recorder(nullptr); }
    gradient_probe(const gradient_probe&) = delete;
    gradient_probe& operator=(const gradient_probe&) = delete;

    /// Records ‖∂L/∂s_k‖ for every part of every state (h; and c for an LSTM) in later backward
    /// calls. states[k] is the state of step k, as unroll returns them.
    template <class S>
    void watch(const std::vector<S>& states)
    {
        auto& norms = m_records->state_norms;
        for (std::size_t k = 0; k < states.size(); ++k)
        {
            const auto parts = state_traits<S>::parts(states[k]);
            if (norms.size() < parts.size())
                norms.resize(parts.size());
            for (std::size_t p = 0; p < parts.size(); ++p)
            {
                if (norms[p].size() < states.size())
                    norms[p].resize(states.size(), 0.0);
                // The records, not the probe: a hook may outlive a probe on a longer-lived tape.
                parts[p].register_hook(
                    [r = m_records, p, k](const tensor& g) { r->state_norms[p][k] = l2_norm(g); });
            }
        }
    }

    /// The number of watched steps.
    std::size_t steps() const
    {
        return m_records->state_norms.empty() ? 0 : m_records->state_norms[0].size();
    }
    /// ‖∂L/∂(part `part` of s_k)‖ for every step k: part 0 is h, part 1 an LSTM's c.
    const std::vector<double>& state_norms(std::size_t part = 0) const
    {
        UNFOLD_CHECK(part < m_records->state_norms.size(),
                     "gradient_probe: no state part {} was watched ({} parts)", part,
                     m_records->state_norms.size());
        return m_records->state_norms[part];
    }

    /// Step k's share of ∂L/∂p: the sum of what the ops recorded at step k added to p's gradient
    /// (zeros if none used p at step k).
    tensor share(const param& p, std::size_t step) const
    {
        const auto& s = shares_of(p);
        return step < s.per_step.size() ? s.per_step[step] : zeros(p.shape());
    }
    /// ‖share(p, k)‖ for k = 0 … steps() − 1.
    std::vector<double> share_norms(const param& p) const
    {
        std::vector<double> out;
        for (std::size_t k = 0; k < steps(); ++k)
            out.push_back(l2_norm(share(p, k)));
        return out;
    }
    /// What ops outside any time step (a read-out after the unroll) added to ∂L/∂p.
    tensor outside_steps(const param& p) const { return shares_of(p).outside; }
    /// Σ_k share(p, k) + outside_steps(p): the gradient p received while the probe was attached.
    tensor total(const param& p) const
    {
        const auto& s = shares_of(p);
        tensor sum = s.outside;
        for (const tensor& g : s.per_step)
            sum += g;
        return sum;
    }

    /// One row per step (every `every` steps, and the last): k, ‖∂L/∂h_k‖ (and ‖∂L/∂c_k‖ for a
    /// two-part state) and ‖share of p‖ for every p in `columns`.
    void print(std::ostream& out, const std::vector<param>& columns, std::size_t every = 1) const
    {
        const auto& norms = m_records->state_norms;
        out << fmt::format("{:>5} {:>12}", "step", "|dL/dh_k|");
        if (norms.size() > 1)
            out << fmt::format(" {:>12}", "|dL/dc_k|");
        for (const param& p : columns)
            out << fmt::format(" {:>14}", "|" + p.name() + "@k|");
        out << "\n";
        std::vector<std::vector<double>> share_columns;
        for (const param& p : columns)
            share_columns.push_back(share_norms(p));
        for (std::size_t k = 0; k < steps(); ++k)
        {
            if (k % every != 0 && k + 1 != steps())
                continue;
            out << fmt::format("{:>5} {:>12.4e}", k, norms[0][k]);
            if (norms.size() > 1)
                out << fmt::format(" {:>12.4e}", norms[1][k]);
            for (const auto& column : share_columns)
                out << fmt::format(" {:>14.4e}", column[k]);
            out << "\n";
        }
    }

    /// Forgets every record (before another backward whose shares should not add up).
    void reset()
    {
        for (auto& part : m_records->state_norms)
            std::fill(part.begin(), part.end(), 0.0);
        m_records->shares.clear();
    }

private:
    struct param_shares
    {
        std::vector<tensor> per_step;
        tensor outside;
    };
    struct records
    {
        std::vector<std::vector<double>> state_norms; // [part][step]
        std::unordered_map<const void*, param_shares> shares;
    };

    void record(const param& p, const site& where, const tensor& contribution) override
    {
        param_shares& s = m_records->shares[p.id()];
        if (s.outside.shape() != p.shape())
            s.outside = zeros(p.shape());
        if (step_of(where) < 0)
        {
            s.outside += contribution;
            return;
        }
        const auto k = std::size_t(step_of(where));
        while (s.per_step.size() <= k)
            s.per_step.push_back(zeros(p.shape()));
        s.per_step[k] += contribution;
    }

    const param_shares& shares_of(const param& p) const
    {
        const auto found = m_records->shares.find(p.id());
        UNFOLD_CHECK(found != m_records->shares.end(),
                     "gradient_probe: parameter '{}' received no gradient while the probe was "
                     "attached",
                     p.name());
        return found->second;
    }

    tape& m_tape;
    std::shared_ptr<records> m_records;
};

} // namespace unfold
