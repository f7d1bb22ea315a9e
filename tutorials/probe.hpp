#pragma once
/// The gradient-flow probe: how much gradient reaches each time step of an unrolled network, and
/// how much each step contributes to every shared parameter's gradient.
///
/// It runs one ordinary forward and backward, with one difference: the cell of step k uses its
/// own copies of the shared parameters ("untied" weights, named "weight_hh@k"), each a leaf of
/// its own on the tape. The network computes exactly the same values, and the copy of step k
/// receives step k's share of the gradient; the shares are then added into the real parameters,
/// so afterwards their gradients are what a tied unroll gives (Note [Gradient accumulation]):
///     ∂L/∂W = Σ_k ∂L/∂W@k.
/// The state gradients ∂L/∂h_k come from the states' own grad() after backward.
/// Only public API is used; a tape hook reporting each use of a bound parameter would avoid the
/// copies.

#include <cmath>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "framework/tape.hpp"
#include "models/cell.hpp"
#include "tutorials/plot.hpp"

namespace unfold::tutorial
{

inline double norm(const tensor& g)
{
    double s = 0;
    for (real v : g)
        s += double(v) * double(v);
    return std::sqrt(s);
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

/// Runs `cell` over xs from s0 on tape `t` with the parameters `shared` (members of Cell) untied
/// per step, computes L = loss(t, states), backpropagates it, adds every step's share into the
/// real parameters' gradients and returns what reached each step.
template <class Cell, class Loss>
gradient_flow probe_gradient_flow(const Cell& cell, std::initializer_list<param Cell::*> shared,
                                  tape& t, const std::vector<var>& xs,
                                  const typename Cell::state& s0, Loss&& loss)
{
    using state = typename Cell::state;
    const std::size_t T = xs.size();
    std::vector<std::vector<param>> copies(shared.size());
    std::vector<state> states;
    state s = s0;
    for (std::size_t k = 0; k < T; ++k)
    {
        Cell step = cell;
        std::size_t p = 0;
        for (auto member : shared)
        {
            const param& real_param = cell.*member;
            param copy(real_param.name() + "@" + std::to_string(k), real_param.value());
            step.*member = copy;
            copies[p++].push_back(copy);
        }
        s = step(t, xs[k], s);
        states.push_back(s);
    }
    const var l = loss(t, states);
    t.backward(l);

    gradient_flow flow;
    flow.loss = l.item();
    for (const auto& st : states)
    {
        const auto parts = state_traits<state>::parts(st);
        flow.state_norm.push_back(norm(parts[0].grad()));
        if (parts.size() > 1)
            flow.cell_norm.push_back(norm(parts[1].grad()));
    }
    std::size_t p = 0;
    for (auto member : shared)
    {
        param real_param = cell.*member;
        flow.names.push_back(real_param.name());
        std::vector<tensor> shares;
        for (auto& c : copies[p])
        {
            shares.push_back(c.grad());
            real_param.grad() += c.grad();
        }
        flow.share.push_back(std::move(shares));
        ++p;
    }
    return flow;
}

} // namespace unfold::tutorial
