#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = −x
struct neg_op
{
    static constexpr const char* name = "neg";
    tensor forward(const tensor& x) const { return -x; }
    // dy/dx = −1
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) -= gy;
    }
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}); }
};

[[nodiscard]] inline var neg(const var& x) { return apply(neg_op{}, x); }
[[nodiscard]] inline var operator-(const var& x) { return neg(x); }

} // namespace unfold
