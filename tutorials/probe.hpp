#pragma once
/// The built-in gradient-flow probe (models/probe.hpp, Note [Gradient probe]) for notebooks: a
/// plot of what it recorded, and probe_gradient_flow, which runs one probed unroll and backward
/// and returns the records as plain vectors (handy when a notebook compares many cells).

#include <cmath>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "tutorials/plot.hpp"
#include <unfold/models/probe.hpp>
#include <unfold/models/unroll.hpp>

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

/// What probe_gradient_flow recorded over T steps.
struct gradient_flow
{
    /// ‖∂L/∂h_k‖ for k = 0 … T−1 (h = the state's output part).
    std::vector<double> state_norm;
    std::vector<std::vector<tensor>> share; ///< share[p][k] = step k's part of ∂L/∂param p

    /// Σ_k share[p][k]: the tied parameter's gradient.
    tensor total(std::size_t p) const
    {
        tensor s = zeros(share[p][0].shape());
        for (const auto& g : share[p])
            s += g;
        return s;
    }
};

/// Runs `cell` over xs from s0 on tape `t` under a gradient_probe, computes L = loss(t, states),
/// backpropagates it (the parameters' gradients accumulate as in any backward) and returns what
/// reached each step and every step's share of the parameters `shared` (members of Cell, its
/// base's included: &rnn_cell::weight_hh).
/// T itself, in a context where it is not deduced (std::type_identity, C++20).
template <class T>
struct same_type
{
    using type = T;
};

template <class Cell, class Loss>
gradient_flow probe_gradient_flow(
    const Cell& cell, std::initializer_list<typename same_type<param Cell::*>::type> shared,
    tape& t, const std::vector<var>& xs, const typename Cell::state& s0, Loss&& loss)
{
    gradient_probe probe(t);
    const auto states = unroll(cell, t, xs, s0);
    probe.watch(states);
    t.backward(loss(t, states));

    gradient_flow flow;
    flow.state_norm = probe.state_norms(0);
    for (auto member : shared)
    {
        std::vector<tensor> shares;
        for (std::size_t k = 0; k < xs.size(); ++k)
            shares.push_back(probe.share(cell.*member, k));
        flow.share.push_back(std::move(shares));
    }
    return flow;
}

} // namespace unfold::tutorial
