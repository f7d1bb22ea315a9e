#pragma once
#include <unfold/framework/op.hpp>
#include <unfold/ops/scale_shift.hpp> // the scalar forms: x + 1, 0.5 * x

namespace unfold
{

/// y = a / b (elementwise, NumPy broadcasting); division by zero gives ±inf or NaN, as in PyTorch
struct div_op
{
    static constexpr const char* name = "div"; ///< in error and anomaly messages
    /// a / b; throws if the shapes do not broadcast
    tensor forward(const tensor& a, const tensor& b) const
    {
        return broadcast_apply(name, a, b, [](real x, real y) { return x / y; });
    }
    /// da = gy / b, db = −gy · a / b² = −gy · y / b
    void backward(const tensor&, const tensor& b, const tensor& y, const tensor& gy, tensor& ga,
                  tensor& gb) const
    {
        if (gy.shape() == b.shape())
        {
            accumulate(ga, gy / b);
            accumulate(gb, -gy * y / b);
            return;
        }
        accumulate_with(ga, gy, b, [](real g, real d) { return g / d; });
        accumulate_with(gb, tensor(gy * y), b, [](real gy_y, real d) { return -gy_y / d; });
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("same shape")
            .input({3, 4})
            .input({3, 4}, 0.5, 2)
            .next("negative divisor")
            .input({3, 4})
            .input({3, 4}, -2, -0.5)
            .next("row broadcast")
            .input({3, 4})
            .input({4}, 0.5, 2)
            .next("column broadcast")
            .input({3, 4})
            .input({3, 1}, 0.5, 2)
            .next("broadcast numerator")
            .input({3, 1})
            .input({3, 4}, 0.5, 2)
            .next("sequence / row")
            .input({2, 3, 4})
            .input({1, 4}, 0.5, 2)
            .next("x / x")
            .input({3, 4}, 0.5, 2)
            .build([](const std::vector<var>& x) { return apply(div_op{}, x[0], x[0]); });
    }
};

/// a / b elementwise, with NumPy broadcasting.
[[nodiscard]] inline var div(const var& a, const var& b) { return apply(div_op{}, a, b); }
/// a / b: div(a, b).
[[nodiscard]] inline var operator/(const var& a, const var& b) { return div(a, b); }

} // namespace unfold
