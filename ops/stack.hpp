#pragma once
#include <algorithm>

#include <unfold/framework/axis.hpp>
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y[k] = x_k: inputs of one shape stacked along a new axis 0 ((B, F) × T → (T, B, F))
struct stack_op
{
    static constexpr const char* name = "stack"; ///< in error and anomaly messages

    /// The inputs stacked along a new axis 0; throws if their shapes differ
    tensor forward(const std::vector<const tensor*>& xs) const
    {
        const shape_type& first = xs.front()->shape();
        for (const tensor* x : xs)
            UNFOLD_CHECK(x->shape() == first, "stack: shapes {} differ; all inputs need one shape",
                         shapes_str(xs));
        shape_type out{xs.size()};
        out.insert(out.end(), first.begin(), first.end());
        tensor y(out);
        real* dst = y.data();
        for (const tensor* x : xs)
            dst = std::copy(x->data(), x->data() + x->size(), dst);
        return y;
    }
    /// dx_k = gy[k]
    void backward(const std::vector<const tensor*>& xs, const tensor&, const tensor& gy,
                  const std::vector<tensor*>& gxs) const
    {
        const real* src = gy.data();
        for (tensor* gx : gxs)
        {
            real* dst = gx->data();
            for (std::size_t j = 0; j < gx->size(); ++j)
                dst[j] += src[j];
            src += gx->size();
        }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto stacked = [](const std::vector<var>& x) { return apply_n(stack_op{}, x); };
        return gradcheck_spec("three steps")
            .input({2, 3})
            .input({2, 3})
            .input({2, 3})
            .build(stacked)
            .next("vectors")
            .input({4})
            .input({4})
            .build(stacked)
            .next("one input")
            .input({2, 1, 3})
            .build(stacked)
            .next("x twice")
            .input({2, 3})
            .build([](const std::vector<var>& x) {
                return apply_n(stack_op{}, {x[0], x[0]});
            });
    }
};

/// Inputs of one shape stacked along a new axis 0: T steps of (B, F) make a (T, B, F) sequence.
/// The inverse of select over every step.
[[nodiscard]] inline var stack(const std::vector<var>& xs) { return apply_n(stack_op{}, xs); }

} // namespace unfold
