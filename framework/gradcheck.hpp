#pragma once
/// Gradient checks: compare the tape's gradients with central finite differences, in double
/// precision only (UNFOLD_DOUBLE, the target Unfold::unfold_f64): in float, rounding hides a
/// backward that is a few percent wrong, so a float build refuses to compile a check. A cell's
/// check over a short unroll, check_cell, is in models/check_cell.hpp.
///
/// The loss is L = Σ_k <w_k, y_k> with a random weighting w_k of every output, so every element
/// of every output's gradient is exercised, not just their sum.

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <unfold/framework/gradcheck_spec.hpp>
#include <unfold/framework/op.hpp>
#include <unfold/framework/tape.hpp>

namespace unfold
{

/// How gradcheck and check_op compare: a derivative passes when
/// |numeric − analytic| ≤ atol + rtol · |numeric|.
struct gradcheck_options
{
    real eps = real(1e-6);        ///< the central-difference step, in input units
    real atol = real(1e-5);       ///< the absolute tolerance
    real rtol = real(1e-3);       ///< the tolerance relative to |numeric|
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

namespace detail
{
/// Always true in a double build; false (and a compile error) in a float one, but only where a
/// check is instantiated, so the checker's header stays includable everywhere.
template <class T>
struct always_true : std::true_type
{};
template <class T>
constexpr bool checks_in_double = std::is_same_v<real, double>&& always_true<T>::value;
#define UNFOLD_GRADCHECK_IN_DOUBLE(T)                                                              \
    static_assert(                                                                                 \
        ::unfold::detail::checks_in_double<T>,                                                     \
        "Unfold's gradient checks run in double precision only: compile this check "               \
        "with UNFOLD_DOUBLE defined (link Unfold::unfold_f64). In float, rounding hides "          \
        "a backward that is a few percent wrong.")
} // namespace detail

/// Checks d(Σ_k <w_k, f_k>)/d(inputs and params) against central differences. Every element of
/// every input and parameter is perturbed. Parameter gradients are restored afterwards. `f` builds
/// one var or a vector of vars from the inputs, deterministically (seed any randomness inside).
template <class F>
gradcheck_result gradcheck(const F& build, const std::vector<tensor>& inputs,
                           std::vector<param> params = {}, gradcheck_options options = {})
{
    UNFOLD_GRADCHECK_IN_DOUBLE(F);
    auto f = [&build](tape& t, const std::vector<var>& xs) {
        if constexpr (std::is_convertible_v<
                          std::invoke_result_t<const F&, tape&, const std::vector<var>&>, var>)
            return std::vector<var>{build(t, xs)};
        else
            return std::vector<var>(build(t, xs));
    };
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
    UNFOLD_GRADCHECK_IN_DOUBLE(Op);
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
