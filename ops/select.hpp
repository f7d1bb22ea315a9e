#pragma once
#include <algorithm>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x[index]: one entry of axis 0, which is dropped ((T, B, F) → (B, F), time step t)
struct select_op
{
    static constexpr const char* name = "select"; ///< in error and anomaly messages
    std::ptrdiff_t index = 0; ///< the entry of axis 0; negative counts from the end

    /// index as a position in [0, x.shape()[0]).
    std::size_t position(const tensor& x) const
    {
        return static_cast<std::size_t>(index < 0 ? index + std::ptrdiff_t(x.shape()[0]) : index);
    }
    /// x[index] along axis 0; throws if the index is out of range
    tensor forward(const tensor& x) const
    {
        const auto n = x.dimension() ? static_cast<std::ptrdiff_t>(x.shape()[0]) : 0;
        UNFOLD_CHECK(x.dimension() >= 1 && index >= -n && index < n,
                     "select: index {} is out of range for axis 0 of shape {}", index,
                     shape_str(x.shape()));
        const shape_type out(x.shape().begin() + 1, x.shape().end());
        tensor y(out);
        const real* src = x.data() + position(x) * y.size();
        std::copy(src, src + y.size(), y.data());
        return y;
    }
    /// dx[index] += gy; zero elsewhere
    void backward(const tensor& x, const tensor&, const tensor& gy, tensor& gx) const
    {
        real* dst = gx.data() + position(x) * gy.size();
        for (std::size_t j = 0; j < gy.size(); ++j)
            dst[j] += gy.data()[j];
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto at = [](std::ptrdiff_t index) {
            return [=](const std::vector<var>& x) { return apply(select_op{index}, x[0]); };
        };
        return gradcheck_spec("time step of a sequence")
            .input({3, 2, 4})
            .build(at(1))
            .next("last step")
            .input({3, 2, 4})
            .build(at(-1))
            .next("row of a matrix")
            .input({4, 3})
            .build(at(0))
            .next("element of a vector")
            .input({5})
            .build(at(3));
    }
};

/// x[index] along axis 0, which is dropped: time step t of a (T, B, F) sequence is (B, F).
/// Negative indices count from the end.
[[nodiscard]] inline var select(const var& x, std::ptrdiff_t index)
{
    return apply(select_op{index}, x);
}

} // namespace unfold
