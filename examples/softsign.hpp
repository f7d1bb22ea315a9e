#pragma once
// A user's op, written outside Unfold's tree: one struct with forward, backward and its
// gradient-check spec, and the free function that records it on a tape.
#include <unfold/framework/op.hpp>

namespace example
{
using namespace unfold;

/// y = x / (1 + |x|)
struct softsign_op
{
    static constexpr const char* name = "softsign";
    tensor forward(const tensor& x) const { return x / (1 + xt::abs(x)); }
    // dy/dx = 1 / (1 + |x|)^2
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        xt::noalias(gx) += gy / xt::square(1 + xt::abs(x));
    }
    static gradcheck_spec check() { return gradcheck_spec().input({3, 4}); }
};

[[nodiscard]] inline var softsign(const var& x) { return apply(softsign_op{}, x); }

} // namespace example
