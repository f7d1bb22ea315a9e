#pragma once
#include "framework/op.hpp"

namespace unfold
{

/// y = a · b for a of shape (..., k) and b of shape (k, n): every leading axis of a is a row, so
/// a whole (time, batch, features) sequence is projected with one GEMM.
struct matmul_op
{
    static constexpr const char* name = "matmul";
    tensor forward(const tensor& a, const tensor& b) const
    {
        UNFOLD_CHECK(a.dimension() >= 1 && b.dimension() == 2 && a.shape().back() == b.shape()[0],
                     "matmul: cannot multiply shapes {} and {} (needs (..., k) and (k, n))",
                     shape_str(a.shape()), shape_str(b.shape()));
        shape_type out = a.shape();
        out.back() = b.shape()[1];
        tensor y(out);
        const auto [m, k] = as_matrix(a.shape());
        gemm(false, false, m, b.shape()[1], k, 1, a.data(), b.data(), 0, y.data());
        return y;
    }
    // da = gy · bᵀ, db = aᵀ · gy (GEMMs with transpose flags, accumulating with beta = 1)
    void backward(const tensor& a, const tensor& b, const tensor&, const tensor& gy, tensor& ga,
                  tensor& gb) const
    {
        const auto [m, k] = as_matrix(a.shape());
        const std::size_t n = b.shape()[1];
        gemm(false, true, m, k, n, 1, gy.data(), b.data(), 1, ga.data());
        gemm(true, false, k, n, m, 1, a.data(), gy.data(), 1, gb.data());
    }
    static gradcheck_spec check()
    {
        return gradcheck_spec("matrix").input({3, 4}).input({4, 5})
            .next("row vector").input({1, 4}).input({4, 2})
            .next("sequence").input({2, 3, 4}).input({4, 5})
            .next("x · x").input({3, 3})
            .build([](const std::vector<var>& x) { return apply(matmul_op{}, x[0], x[0]); });
    }
};

[[nodiscard]] inline var matmul(const var& a, const var& b) { return apply(matmul_op{}, a, b); }

} // namespace unfold
