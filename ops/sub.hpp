#pragma once
#include <unfold/framework/op.hpp>
#include <unfold/ops/scale_shift.hpp> // the scalar forms: x + 1, 0.5 * x

namespace unfold
{

/// y = a − b, with NumPy broadcasting
struct sub_op
{
    static constexpr const char* name = "sub";    ///< in error and anomaly messages
    static constexpr unsigned backward_reads = 0; ///< no values (Note [Recomputation])
    /// a − b; throws if the shapes do not broadcast
    tensor forward(const tensor& a, const tensor& b) const
    {
        return broadcast_apply(name, a, b, [](real x, real y) { return x - y; });
    }
    /// da = gy, db = −gy, each summed over the axes it was broadcast along
    void backward(const tensor&, const tensor&, const tensor&, const tensor& gy, tensor& ga,
                  tensor& gb) const
    {
        accumulate(ga, gy);
        accumulate(gb, tensor(-gy));
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec::broadcasting_pair()
            .next("broadcast first operand")
            .input({1, 4})
            .input({3, 4})
            .next("sequence − row")
            .input({2, 3, 4})
            .input({1, 4})
            .next("x − x")
            .input({3, 4})
            .build([](const std::vector<var>& x) { return apply(sub_op{}, x[0], x[0]); });
    }
};

/// a − b with NumPy broadcasting (either operand may be broadcast).
[[nodiscard]] inline var sub(const var& a, const var& b) { return apply(sub_op{}, a, b); }
/// a − b: sub(a, b).
[[nodiscard]] inline var operator-(const var& a, const var& b) { return sub(a, b); }

} // namespace unfold
