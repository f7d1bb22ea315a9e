#pragma once
#include <vector>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = xᵀ for a matrix, or y = x with its axes permuted: y.shape[d] = x.shape[permutation[d]]
struct transpose_op
{
    static constexpr const char* name = "transpose"; ///< in error and anomaly messages
    std::vector<std::size_t> permutation;            ///< empty: swap the two axes of a matrix

    /// xᵀ or x with permuted axes; throws on a bad rank or permutation
    tensor forward(const tensor& x) const
    {
        if (permutation.empty())
        {
            UNFOLD_CHECK(x.dimension() == 2,
                         "transpose: expects a matrix, got shape {}; give a permutation of the "
                         "axes for other ranks",
                         shape_str(x.shape()));
            const std::size_t rows = x.shape()[0], cols = x.shape()[1];
            tensor y(shape_type{cols, rows});
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = 0; j < cols; ++j)
                    y.data()[j * rows + i] = x.data()[i * cols + j];
            return y;
        }
        std::vector<bool> seen(x.dimension(), false);
        bool valid = permutation.size() == x.dimension();
        for (std::size_t d = 0; valid && d < permutation.size(); ++d)
        {
            valid = permutation[d] < x.dimension() && !seen[permutation[d]];
            if (valid)
                seen[permutation[d]] = true;
        }
        UNFOLD_CHECK(valid, "transpose: ({}) is not a permutation of the axes of shape {}",
                     fmt::join(permutation, ", "), shape_str(x.shape()));
        return xt::transpose(x, permutation);
    }
    /// dx = gy with the inverse permutation applied
    void backward(const tensor&, const tensor&, const tensor& gy, tensor& gx) const
    {
        if (permutation.empty())
        {
            const std::size_t rows = gx.shape()[0], cols = gx.shape()[1];
            for (std::size_t i = 0; i < rows; ++i)
                for (std::size_t j = 0; j < cols; ++j)
                    gx.data()[i * cols + j] += gy.data()[j * rows + i];
            return;
        }
        std::vector<std::size_t> inverse(permutation.size());
        for (std::size_t d = 0; d < permutation.size(); ++d)
            inverse[permutation[d]] = d;
        xt::noalias(gx) += xt::transpose(gy, inverse);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto permuted = [](std::vector<std::size_t> p) {
            return [=](const std::vector<var>& x) { return apply(transpose_op{p}, x[0]); };
        };
        return gradcheck_spec("matrix")
            .input({3, 4})
            .next("column vector")
            .input({4, 1})
            .next("swap leading axes")
            .input({2, 3, 4})
            .build(permuted({1, 0, 2}))
            .next("cycle")
            .input({2, 3, 4})
            .build(permuted({2, 0, 1}))
            .next("identity")
            .input({3, 2})
            .build(permuted({0, 1}));
    }
};

/// xᵀ for a matrix x.
[[nodiscard]] inline var transpose(const var& x) { return apply(transpose_op{}, x); }
/// x with its axes permuted: axis d of the result is axis permutation[d] of x.
[[nodiscard]] inline var transpose(const var& x, std::vector<std::size_t> permutation)
{
    return apply(transpose_op{std::move(permutation)}, x);
}

} // namespace unfold
