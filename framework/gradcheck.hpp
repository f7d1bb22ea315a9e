#pragma once
/// Gradient checks: compare the tape's gradients with central finite differences.
/// Meaningful in the double build (UNFOLD_DOUBLE); the float build uses loose defaults.
///
/// The loss is L = Σ_k <w_k, y_k> with a random weighting w_k of every output, so every element
/// of every output's gradient is exercised, not just their sum.

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <unfold/framework/tape.hpp>

namespace unfold
{

/// How gradcheck and check_op compare: a derivative passes when
/// |numeric − analytic| ≤ atol + rtol · |numeric|. The defaults depend on the build's `real`.
struct gradcheck_options
{
    /// The central-difference step, in input units (1e-6 in double, 1e-2 in float).
    real eps = std::is_same_v<real, double> ? real(1e-6) : real(1e-2);
    /// The absolute tolerance (1e-5 in double, 1e-2 in float).
    real atol = std::is_same_v<real, double> ? real(1e-5) : real(1e-2);
    /// The tolerance relative to |numeric| (1e-3 in double, 5e-2 in float).
    real rtol = std::is_same_v<real, double> ? real(1e-3) : real(5e-2);
    std::uint64_t seed = 1234;    ///< seeds the output weighting (and check_op's inputs)
    std::size_t max_reported = 6; ///< about how many mismatch lines the report keeps (≥ 1)
};

/// The outcome of a gradient check; converts to `passed`.
struct gradcheck_result
{
    bool passed = true;       ///< every compared derivative was within tolerance
    std::size_t checked = 0;  ///< number of scalar derivatives compared
    double max_abs_error = 0; ///< largest |numeric - analytic|
    std::string report;       ///< one line per mismatch (first few), empty when passed
    /// passed.
    explicit operator bool() const { return passed; }
};

/// Builds outputs from input vars on a tape; must be deterministic (seed any randomness inside).
using graph_fn = std::function<std::vector<var>(tape&, const std::vector<var>&)>;

namespace detail
{
inline tensor uniform(const shape_type& shape, real lo, real hi, std::mt19937_64& rng)
{
    std::uniform_real_distribution<double> dist(lo, hi);
    tensor t(shape);
    for (auto& v : t)
        v = real(dist(rng));
    return t;
}
} // namespace detail

/// Checks d(Σ_k <w_k, f_k>)/d(inputs and params) against central differences. Every element of
/// every input and parameter is perturbed. Parameter gradients are restored afterwards.
inline gradcheck_result gradcheck(const graph_fn& f, const std::vector<tensor>& inputs,
                                  std::vector<param> params = {}, gradcheck_options options = {})
{
    std::mt19937_64 rng(options.seed);
    gradcheck_result result;

    // Analytic gradients.
    std::vector<tensor> analytic;
    std::vector<tensor> weights;
    {
        tape t;
        std::vector<var> xs;
        for (const auto& x : inputs)
            xs.push_back(t.variable(x));
        std::vector<var> ys = f(t, xs);
        for (const var& y : ys)
            weights.push_back(detail::uniform(y.shape(), -1, 1, rng));
        std::vector<tensor> saved;
        for (auto& p : params)
        {
            saved.push_back(p.grad());
            p.zero_grad();
        }
        t.backward(ys, weights);
        for (const var& x : xs)
            analytic.push_back(x.grad());
        for (std::size_t i = 0; i < params.size(); ++i)
        {
            analytic.push_back(params[i].grad());
            params[i].grad() = saved[i];
        }
    }

    std::vector<tensor> point = inputs;
    auto loss = [&] {
        no_grad_guard no_grad;
        tape t;
        std::vector<var> xs;
        for (const auto& x : point)
            xs.push_back(t.constant(x));
        std::vector<var> ys = f(t, xs);
        double l = 0;
        for (std::size_t k = 0; k < ys.size(); ++k)
            l += xt::sum(xt::cast<double>(weights[k] * ys[k].value()))();
        return l;
    };

    auto compare = [&](const std::string& what, real* values, std::size_t n, const tensor& ana) {
        for (std::size_t i = 0; i < n; ++i)
        {
            const real original = values[i];
            values[i] = original + options.eps;
            const double plus = loss();
            values[i] = original - options.eps;
            const double minus = loss();
            values[i] = original;
            const double numeric = (plus - minus) / (2 * double(options.eps));
            const double analytic_value = ana.data()[i];
            const double err = std::abs(numeric - analytic_value);
            result.max_abs_error = std::max(result.max_abs_error, err);
            ++result.checked;
            if (!(err <= options.atol + options.rtol * std::abs(numeric)))
            {
                if (result.passed || result.report.size() < options.max_reported * 120)
                    result.report += fmt::format("{} [flat index {}]: numeric {:.8g}, analytic "
                                                 "{:.8g}\n",
                                                 what, i, numeric, analytic_value);
                result.passed = false;
            }
        }
    };
    for (std::size_t k = 0; k < point.size(); ++k)
        compare(fmt::format("input {}", k), point[k].data(), point[k].size(), analytic[k]);
    for (std::size_t k = 0; k < params.size(); ++k)
        compare(fmt::format("parameter '{}'", params[k].name()), params[k].value().data(),
                params[k].size(), analytic[point.size() + k]);
    return result;
}

/// One-output convenience overload.
inline gradcheck_result gradcheck(const std::function<var(tape&, const std::vector<var>&)>& f,
                                  const std::vector<tensor>& inputs, std::vector<param> params = {},
                                  gradcheck_options options = {})
{
    return gradcheck(
        [&](tape& t, const std::vector<var>& xs) { return std::vector<var>{f(t, xs)}; }, inputs,
        std::move(params), options);
}

/// One gradient-check case of an op: input shapes and sampling ranges, points to stay away from
/// (kinks), and optionally how to build the op from its inputs (ops with attributes).
struct gradcheck_case
{
    std::string label;                                 ///< names the case in reports
    std::vector<shape_type> shapes;                    ///< one shape per input
    std::vector<std::pair<real, real>> ranges;         ///< [lo, hi) per input, sampled uniformly
    std::vector<real> kinks;                           ///< points every input keeps 0.05 away from
    std::function<var(const std::vector<var>&)> build; ///< empty: apply(Op{}, inputs...)
};

/// What an op's `static gradcheck_spec check()` returns: one or more cases, built fluently:
///   gradcheck_spec("same shape").input({3, 4}).input({3, 4}).next("bias").input({3, 4}).input({4})
class gradcheck_spec
{
public:
    /// A spec whose first case is named `label`.
    explicit gradcheck_spec(std::string label = "default") { next(std::move(label)); }

    /// Adds an input of `shape` with values drawn uniformly from [lo, hi].
    gradcheck_spec& input(shape_type shape, real lo = -1, real hi = 1)
    {
        m_cases.back().shapes.push_back(std::move(shape));
        m_cases.back().ranges.emplace_back(lo, hi);
        return *this;
    }
    /// Keeps inputs at least 0.05 away from `point`, where the op is not differentiable.
    gradcheck_spec& avoid(real point)
    {
        m_cases.back().kinks.push_back(point);
        return *this;
    }
    /// How to build the op from its input vars, for ops with attributes or many inputs.
    gradcheck_spec& build(std::function<var(const std::vector<var>&)> f)
    {
        m_cases.back().build = std::move(f);
        return *this;
    }
    /// Starts a new case.
    gradcheck_spec& next(std::string label)
    {
        m_cases.push_back({});
        m_cases.back().label = std::move(label);
        return *this;
    }
    /// The cases, in the order given.
    const std::vector<gradcheck_case>& cases() const { return m_cases; }

private:
    std::vector<gradcheck_case> m_cases;
};

namespace detail
{
template <class Op, class = void>
struct unary : std::false_type
{};
template <class Op>
struct unary<Op, std::void_t<decltype(std::declval<Op&>().forward(std::declval<const tensor&>()))>>
    : std::true_type
{};
template <class Op, class = void>
struct binary : std::false_type
{};
template <class Op>
struct binary<Op, std::void_t<decltype(std::declval<Op&>().forward(std::declval<const tensor&>(),
                                                                   std::declval<const tensor&>()))>>
    : std::true_type
{};

template <class Op>
var apply_default(const std::vector<var>& xs)
{
    if constexpr (unary<Op>::value)
    {
        UNFOLD_CHECK(xs.size() == 1, "{}: gradcheck case has {} inputs, the op takes 1", Op::name,
                     xs.size());
        return apply(Op{}, xs[0]);
    }
    else if constexpr (binary<Op>::value)
    {
        UNFOLD_CHECK(xs.size() == 2, "{}: gradcheck case has {} inputs, the op takes 2", Op::name,
                     xs.size());
        return apply(Op{}, xs[0], xs[1]);
    }
    else
    {
        fail(fmt::format("{}: gradcheck case needs .build(...) for this op", Op::name));
    }
}

inline tensor sample_input(const gradcheck_case& c, std::size_t k, std::mt19937_64& rng)
{
    tensor x = uniform(c.shapes[k], c.ranges[k].first, c.ranges[k].second, rng);
    constexpr real margin = real(0.05);
    for (auto& v : x)
        for (real kink : c.kinks)
            if (std::abs(v - kink) < margin)
                v = kink + (v < kink ? -margin : margin);
    return x;
}
} // namespace detail

/// Gradient-checks every case of Op::check(), each twice: once as is and once with the inputs
/// feeding two copies of the op, which catches a backward that assigns instead of accumulating.
template <class Op>
gradcheck_result check_op(gradcheck_options options = {})
{
    gradcheck_result total;
    std::mt19937_64 rng(options.seed);
    const gradcheck_spec spec = Op::check();
    for (const gradcheck_case& c : spec.cases())
    {
        std::vector<tensor> inputs;
        for (std::size_t k = 0; k < c.shapes.size(); ++k)
            inputs.push_back(detail::sample_input(c, k, rng));
        auto build = [&c](const std::vector<var>& xs) {
            return c.build ? c.build(xs) : detail::apply_default<Op>(xs);
        };
        const gradcheck_result once = gradcheck(
            [&](tape&, const std::vector<var>& xs) { return std::vector<var>{build(xs)}; }, inputs,
            {}, options);
        const gradcheck_result twice = gradcheck(
            [&](tape&, const std::vector<var>& xs) {
                return std::vector<var>{build(xs), build(xs)};
            },
            inputs, {}, options);
        for (const auto* r : {&once, &twice})
        {
            total.checked += r->checked;
            total.max_abs_error = std::max(total.max_abs_error, r->max_abs_error);
            if (!r->passed)
            {
                total.passed = false;
                total.report +=
                    fmt::format("{} [{}{}]:\n{}", Op::name, c.label,
                                r == &twice ? ", input reused by two nodes" : "", r->report);
            }
        }
    }
    return total;
}

} // namespace unfold
