#pragma once
#include "framework/op.hpp"

namespace unfold
{

/// y = tanh(x)
struct tanh_op
{
    static constexpr const char* name = "tanh";
    tensor forward(const tensor& x) const { return xt::tanh(x); }
    // dy/dx = 1 − y²
    void backward(const tensor&, const tensor& y, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy * (real(1) - y * y);
    }
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}, -2, 2); }
};

[[nodiscard]] inline var tanh(const var& x) { return apply(tanh_op{}, x); }

} // namespace unfold
