#pragma once
#include <algorithm>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x with the same elements in row-major order, seen as `shape`
struct reshape_op
{
    static constexpr const char* name = "reshape"; ///< in error and anomaly messages
    shape_type shape;                              ///< the output shape, with as many elements as x

    /// x's elements seen as `shape`; throws if the element counts differ
    tensor forward(const tensor& x) const
    {
        UNFOLD_CHECK(element_count(shape) == x.size(),
                     "reshape: cannot reshape shape {} ({} elements) into {} ({} elements)",
                     shape_str(x.shape()), x.size(), shape_str(shape), element_count(shape));
        tensor y(shape);
        std::copy(x.data(), x.data() + x.size(), y.data());
        return y;
    }
    /// dx = gy seen in x's shape
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        real* pg = gx.data();
        const real* pgy = gy.data();
        for (std::size_t j = 0; j < gx.size(); ++j)
            pg[j] += pgy[j];
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto to = [](shape_type shape) {
            return [=](const std::vector<var>& x) { return apply(reshape_op{shape}, x[0]); };
        };
        return gradcheck_spec("sequence to rows")
            .input({2, 3, 4})
            .build(to({6, 4}))
            .next("matrix to vector")
            .input({3, 4})
            .build(to({12}))
            .next("vector to rank 3")
            .input({6})
            .build(to({2, 1, 3}))
            .next("one element to rank 0")
            .input({1, 1})
            .build(to({}));
    }
};

/// x with its elements (row-major order) seen as `shape`; the element counts must match.
[[nodiscard]] inline var reshape(const var& x, shape_type shape)
{
    return apply(reshape_op{std::move(shape)}, x);
}

} // namespace unfold
