#pragma once
#include <unfold/framework/op.hpp>
#include <unfold/ops/scale_shift.hpp> // the scalar forms: x + 1, 0.5 * x

namespace unfold
{

/// y = a ⊙ b (elementwise, NumPy broadcasting)
struct mul_op
{
    static constexpr const char* name = "mul"; ///< in error and anomaly messages
    static constexpr unsigned backward_reads =
        0b011; ///< a and b, not the product (Note [Recomputation])
    static constexpr bool skips_unneeded_grads = true; ///< see Note [Unneeded gradients]
    /// a ⊙ b; throws if the shapes do not broadcast
    tensor forward(const tensor& a, const tensor& b) const
    {
        return broadcast_apply(name, a, b, [](real x, real y) { return x * y; });
    }
    /// da = gy ⊙ b, db = gy ⊙ a
    void backward(const tensor& a, const tensor& b, const tensor&, const tensor& gy, tensor& ga,
                  tensor& gb) const
    {
        if (a.shape() == b.shape())
        {
            const real *pa = a.data(), *pb = b.data(), *pg = gy.data();
            real *pga = ga.data(), *pgb = gb.data();
            for (std::size_t i = 0, n = ga.size(); i < n; ++i)
                pga[i] += pg[i] * pb[i];
            for (std::size_t i = 0, n = gb.size(); i < n; ++i)
                pgb[i] += pg[i] * pa[i];
            return;
        }
        const auto times = [](real g, real other) { return g * other; };
        if (ga.size())
            accumulate_with(ga, gy, b, times);
        if (gb.size())
            accumulate_with(gb, gy, a, times);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec::broadcasting_pair().next("x * x").input({3, 4}).build(
            [](const std::vector<var>& x) { return apply(mul_op{}, x[0], x[0]); });
    }
};

/// a ⊙ b elementwise, with NumPy broadcasting.
[[nodiscard]] inline var mul(const var& a, const var& b) { return apply(mul_op{}, a, b); }
/// a ⊙ b: mul(a, b).
[[nodiscard]] inline var operator*(const var& a, const var& b) { return mul(a, b); }

} // namespace unfold
