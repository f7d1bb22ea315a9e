#pragma once
#include <unfold/framework/op.hpp>
#include <unfold/ops/scale_shift.hpp> // the scalar forms: x + 1, 0.5 * x

namespace unfold
{

/// y = a + b, with NumPy broadcasting (a bias row added to every row of a batch)
struct add_op
{
    static constexpr const char* name = "add";         ///< in error and anomaly messages
    static constexpr unsigned backward_reads = 0;      ///< no values (Note [Recomputation])
    static constexpr bool skips_unneeded_grads = true; ///< see Note [Unneeded gradients]
    /// a + b; throws if the shapes do not broadcast
    tensor forward(const tensor& a, const tensor& b) const
    {
        return broadcast_apply(name, a, b, [](real x, real y) { return x + y; });
    }
    /// da = gy, db = gy, each summed over the axes it was broadcast along
    void backward(const tensor&, const tensor&, const tensor&, const tensor& gy, tensor& ga,
                  tensor& gb) const
    {
        if (ga.size())
            accumulate(ga, gy);
        if (gb.size())
            accumulate(gb, gy);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("same shape")
            .input({3, 4})
            .input({3, 4})
            .next("row broadcast (bias)")
            .input({3, 4})
            .input({4})
            .next("column broadcast")
            .input({3, 1})
            .input({3, 4})
            .next("sequence + bias")
            .input({2, 3, 4})
            .input({1, 4});
    }
};

/// a + b with NumPy broadcasting (either operand may be broadcast, e.g. a bias row).
[[nodiscard]] inline var add(const var& a, const var& b) { return apply(add_op{}, a, b); }
/// a + b: add(a, b).
[[nodiscard]] inline var operator+(const var& a, const var& b) { return add(a, b); }

} // namespace unfold
