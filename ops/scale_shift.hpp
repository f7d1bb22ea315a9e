#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = scale · x + shift, for scalars scale and shift. Behind the scalar operators below;
/// `s / x` (a reciprocal) lives in ops/pow.hpp.
struct scale_shift_op
{
    static constexpr const char* name = "scale_shift"; ///< in error and anomaly messages
    real scale = 1;                                    ///< multiplies x
    real shift = 0;                                    ///< added after scaling

    /// scale · x + shift, elementwise
    tensor forward(const tensor& x) const
    {
        tensor y = tensor::from_shape(x.shape());
        const real* px = x.data();
        real* py = y.data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i)
            py[i] = scale * px[i] + shift;
        return y;
    }
    /// dy/dx = scale
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        const real* pg = gy.data();
        real* px = gx.data();
        for (std::size_t i = 0, n = gx.size(); i < n; ++i)
            px[i] += scale * pg[i];
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("2.5 x − 1")
            .input({3, 4})
            .build([](const std::vector<var>& x) {
                return apply(scale_shift_op{2.5, -1}, x[0]);
            })
            .next("3 − 0.5 x, sequence")
            .input({2, 3, 4})
            .build([](const std::vector<var>& x) {
                return apply(scale_shift_op{-0.5, 3}, x[0]);
            });
    }
};

/// scale · x + shift for scalars scale and shift, one node.
[[nodiscard]] inline var scale_shift(const var& x, real scale, real shift)
{
    return apply(scale_shift_op{scale, shift}, x);
}

// Scalar operators. They take `real`, so int and double literals convert (1 - f, 0.5 * x) in
// both the float and the double build without ambiguity.
/// x + s
[[nodiscard]] inline var operator+(const var& x, real s) { return scale_shift(x, 1, s); }
/// s + x
[[nodiscard]] inline var operator+(real s, const var& x) { return scale_shift(x, 1, s); }
/// x − s
[[nodiscard]] inline var operator-(const var& x, real s) { return scale_shift(x, 1, -s); }
/// s − x
[[nodiscard]] inline var operator-(real s, const var& x) { return scale_shift(x, -1, s); }
/// x · s
[[nodiscard]] inline var operator*(const var& x, real s) { return scale_shift(x, s, 0); }
/// s · x
[[nodiscard]] inline var operator*(real s, const var& x) { return scale_shift(x, s, 0); }
/// x · (1/s): may differ from an exact division in the last bit.
[[nodiscard]] inline var operator/(const var& x, real s) { return scale_shift(x, 1 / s, 0); }

} // namespace unfold
