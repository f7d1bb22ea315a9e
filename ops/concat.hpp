#pragma once
#include <algorithm>

#include <unfold/framework/axis.hpp>
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = [x_0, x_1, ...] joined along one axis; every other axis must agree
struct concat_op
{
    static constexpr const char* name = "concat"; ///< in error and anomaly messages
    std::ptrdiff_t axis = 0; ///< the axis joined along; negative counts from the end

    /// The inputs joined along `axis`; throws if the axis or the other axes do not fit
    tensor forward(const std::vector<const tensor*>& xs) const
    {
        const shape_type& first = xs.front()->shape();
        const std::size_t a = normalize_axis(name, axis, first);
        shape_type out = first;
        out[a] = 0;
        for (const tensor* x : xs)
        {
            bool fits = x->dimension() == first.size();
            for (std::size_t d = 0; fits && d < first.size(); ++d)
                fits = d == a || x->shape()[d] == first[d];
            UNFOLD_CHECK(fits, "concat: shapes {} do not match off axis {}", shapes_str(xs), axis);
            out[a] += x->shape()[a];
        }
        tensor y(out);
        const auto [outer, n, inner] = blocks_around(first, a);
        real* dst = y.data();
        for (std::size_t o = 0; o < outer; ++o)
            for (const tensor* x : xs)
            {
                const std::size_t run = x->shape()[a] * inner;
                const real* src = x->data() + o * run;
                dst = std::copy(src, src + run, dst);
            }
        return y;
    }
    /// dx_k = the block of gy that x_k was copied into
    void backward(const std::vector<const tensor*>& xs, const tensor&, const tensor& gy,
                  const std::vector<tensor*>& gxs) const
    {
        const shape_type& first = xs.front()->shape();
        const std::size_t a = normalize_axis(name, axis, first);
        const auto [outer, n, inner] = blocks_around(first, a);
        const real* src = gy.data();
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t k = 0; k < xs.size(); ++k)
            {
                const std::size_t run = xs[k]->shape()[a] * inner;
                real* dst = gxs[k]->data() + o * run;
                for (std::size_t j = 0; j < run; ++j)
                    dst[j] += src[j];
                src += run;
            }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto along = [](std::ptrdiff_t axis) {
            return [=](const std::vector<var>& x) { return apply_n(concat_op{axis}, x); };
        };
        return gradcheck_spec("rows")
            .input({2, 3})
            .input({4, 3})
            .build(along(0))
            .next("three, last axis")
            .input({3, 2})
            .input({3, 1})
            .input({3, 4})
            .build(along(-1))
            .next("middle axis of rank 3")
            .input({2, 1, 4})
            .input({2, 3, 4})
            .build(along(1))
            .next("x with itself")
            .input({2, 3})
            .build([](const std::vector<var>& x) {
                return apply_n(concat_op{1}, {x[0], x[0]});
            });
    }
};

/// xs joined along `axis` (negative counts from the end); all other axes must agree.
[[nodiscard]] inline var concat(const std::vector<var>& xs, std::ptrdiff_t axis)
{
    return apply_n(concat_op{axis}, xs);
}
/// xs joined along the last axis: [x, h] for a fused input of a cell.
[[nodiscard]] inline var concat_cols(const std::vector<var>& xs) { return concat(xs, -1); }
/// xs joined along axis 0.
[[nodiscard]] inline var concat_rows(const std::vector<var>& xs) { return concat(xs, 0); }

} // namespace unfold
