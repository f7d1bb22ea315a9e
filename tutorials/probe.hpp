#pragma once
/// The built-in gradient-flow probe (models/probe.hpp, Note [Gradient probe]) for notebooks: a
/// plot of what it recorded, and probe_gradient_flow, which runs one probed unroll and backward
/// and returns the records as plain vectors (handy when a notebook compares many cells).

#include <cmath>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "models/probe.hpp"
#include "models/unroll.hpp"
#include "tutorials/plot.hpp"

namespace unfold::tutorial
{

inline double norm(const tensor& g) { return l2_norm(g); }

/// ‖∂L/∂h_k‖ and the norm of every listed parameter's share over k, log scale, shown in the
/// notebook.
inline std::string plot(const gradient_probe& probe, const std::vector<param>& params,
                        const std::string& name, const std::string& title)
{
    std::vector<series> lines{{"|dL/dh_k|", probe.state_norms(), {}}};
    for (const param& p : params)
        lines.push_back({"|" + p.name() + "@k|", probe.share_norms(p), {}});
    return tutorial::plot(name, lines, {title, "step k", "gradient norm", true, false});
}

/// What the probe recorded over T steps.
struct gradient_flow
{
    /// ‖∂L/∂h_k‖ for k = 0 … T−1 (h = the state's output part; for an LSTM also the cell c).
    std::vector<double> state_norm;
    std::vector<double> cell_norm; ///< ‖∂L/∂c_k‖ for states with a second part, else empty
    std::vector<std::string> names;         ///< the shared parameters
    std::vector<std::vector<tensor>> share; ///< share[p][k] = step k's part of ∂L/∂param p
    real loss = 0;

    std::size_t steps() const { return state_norm.size(); }
    /// ‖share[p][k]‖ over k.
    std::vector<double> share_norm(std::size_t p) const
    {
        std::vector<double> out;
        for (const auto& g : share[p])
            out.push_back(norm(g));
        return out;
    }
    /// Σ_k share[p][k]: the tied parameter's gradient.
    tensor total(std::size_t p) const
    {
        tensor s = zeros(share[p][0].shape());
        for (const auto& g : share[p])
            s += g;
        return s;
    }

    /// One row per step: ‖∂L/∂h_k‖ and the norm of every parameter's share (every `every` steps).
    void print(std::ostream& out, std::size_t every = 1) const
    {
        out << fmt::format("{:>5} {:>12}", "step", "|dL/dh_k|");
        for (const auto& n : names)
            out << fmt::format(" {:>12}", "|" + n + "@k|");
        out << "\n";
        for (std::size_t k = 0; k < steps(); ++k)
        {
            if (k % every != 0 && k + 1 != steps())
                continue;
            out << fmt::format("{:>5} {:>12.4e}", k, state_norm[k]);
            for (std::size_t p = 0; p < names.size(); ++p)
                out << fmt::format(" {:>12.4e}", norm(share[p][k]));
            out << "\n";
        }
    }

    /// ‖∂L/∂h_k‖ and every share's norm over k, log scale, shown in the notebook.
    std::string plot(const std::string& name, const std::string& title) const
    {
        std::vector<series> lines{{"|dL/dh_k|", state_norm, {}}};
        for (std::size_t p = 0; p < names.size(); ++p)
            lines.push_back({"|" + names[p] + "@k|", share_norm(p), {}});
        return tutorial::plot(name, lines, {title, "step k", "gradient norm", true, false});
    }
};

/// Runs `cell` over xs from s0 on tape `t` under a gradient_probe, computes L = loss(t, states),
/// backpropagates it (the parameters' gradients accumulate as in any backward) and returns what
/// reached each step and every step's share of the parameters `shared` (members of Cell).
template <class Cell, class Loss>
gradient_flow probe_gradient_flow(const Cell& cell, std::initializer_list<param Cell::*> shared,
                                  tape& t, const std::vector<var>& xs,
                                  const typename Cell::state& s0, Loss&& loss)
{
    gradient_probe probe(t);
    const auto states = unroll(cell, t, xs, s0);
    probe.watch(states);
    const var l = loss(t, states);
    t.backward(l);

    gradient_flow flow;
    flow.loss = l.item();
    flow.state_norm = probe.state_norms(0);
    if (state_traits<typename Cell::state>::parts(s0).size() > 1)
        flow.cell_norm = probe.state_norms(1);
    for (auto member : shared)
    {
        const param& p = cell.*member;
        flow.names.push_back(p.name());
        std::vector<tensor> shares;
        for (std::size_t k = 0; k < xs.size(); ++k)
            shares.push_back(probe.share(p, k));
        flow.share.push_back(std::move(shares));
    }
    return flow;
}

} // namespace unfold::tutorial
