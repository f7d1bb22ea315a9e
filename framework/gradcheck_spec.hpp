#pragma once
/// What an op's `static gradcheck_spec check()` returns (Note [Op contract]): the input shapes and
/// ranges its gradient check samples. Kept apart from the checker (framework/gradcheck.hpp), so
/// that an op file does not compile the whole checker.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <unfold/framework/tape.hpp>
#include <unfold/framework/tensor.hpp>

namespace unfold
{

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
    /// The cases every broadcasting binary op starts with: (3, 4) with (3, 4), with a row (4) and
    /// with a column (3, 1); add its own with next().
    static gradcheck_spec broadcasting_pair()
    {
        return gradcheck_spec("same shape")
            .input({3, 4})
            .input({3, 4})
            .next("row broadcast")
            .input({3, 4})
            .input({4})
            .next("column broadcast")
            .input({3, 4})
            .input({3, 1})
            .next("middle axis broadcast")
            .input({2, 3, 4})
            .input({2, 1, 4})
            .next("last axis of a sequence broadcast")
            .input({2, 3, 1})
            .input({2, 3, 4})
            .next("both broadcast")
            .input({3, 1})
            .input({1, 4});
    }
    /// The cases, in the order given.
    const std::vector<gradcheck_case>& cases() const { return m_cases; }

private:
    std::vector<gradcheck_case> m_cases;
};

} // namespace unfold
