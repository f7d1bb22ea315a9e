#pragma once
#include <unfold/framework/gemm.hpp>
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = a · op(b) for a of shape (..., k) and op(b) of shape (k, n), op(b) = bᵀ when transpose_b
/// (PyTorch's weight layout, (out, in)). Every leading axis of a is a row, so a whole
/// (time, batch, features) sequence is projected with one GEMM.
struct matmul_op
{
    static constexpr const char* name = "matmul";      ///< in error and anomaly messages
    static constexpr bool skips_unneeded_grads = true; ///< see Note [Unneeded gradients]
    static constexpr bool expensive = true;            ///< kept by recompute::cheap_values (a GEMM)
    bool transpose_b = false; ///< multiply by bᵀ: b is (n, k), PyTorch's weight layout

    /// k, the rows of op(b).
    std::size_t k_of(const tensor& b) const { return b.shape()[transpose_b ? 1 : 0]; }
    /// n, the columns of op(b).
    std::size_t n_of(const tensor& b) const { return b.shape()[transpose_b ? 0 : 1]; }

    /// a · op(b); throws unless a is (..., k) and op(b) is (k, n)
    tensor forward(const tensor& a, const tensor& b) const
    {
        UNFOLD_CHECK(a.dimension() >= 1 && b.dimension() == 2 && a.shape().back() == k_of(b),
                     "matmul: cannot multiply shapes {} and {}{} (needs (..., k) and {})",
                     shape_str(a.shape()), shape_str(b.shape()), transpose_b ? " transposed" : "",
                     transpose_b ? "(n, k)" : "(k, n)");
        shape_type out = a.shape();
        out.back() = n_of(b);
        tensor y(out);
        const auto [m, k] = as_matrix(a.shape());
        gemm(false, transpose_b, m, n_of(b), k, 1, a.data(), b.data(), 0, y.data());
        return y;
    }
    /// da = gy · op(b)ᵀ, d op(b) = aᵀ · gy: GEMMs with transpose flags, accumulating (beta = 1)
    void backward(const tensor& a, const tensor& b, const tensor&, const tensor& gy, tensor& ga,
                  tensor& gb) const
    {
        const auto [m, k] = as_matrix(a.shape());
        const std::size_t n = n_of(b);
        if (ga.size())
            gemm(false, !transpose_b, m, k, n, 1, gy.data(), b.data(), 1, ga.data());
        if (!gb.size())
            return;
        if (transpose_b) // gb (n×k) += gyᵀ · a
            gemm(true, false, n, k, m, 1, gy.data(), a.data(), 1, gb.data());
        else // gb (k×n) += aᵀ · gy
            gemm(true, false, k, n, m, 1, a.data(), gy.data(), 1, gb.data());
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto transposed = [](const std::vector<var>& x) {
            return apply(matmul_op{true}, x[0], x[1]);
        };
        return gradcheck_spec("matrix")
            .input({3, 4})
            .input({4, 5})
            .next("row vector")
            .input({1, 4})
            .input({4, 2})
            .next("sequence")
            .input({2, 3, 4})
            .input({4, 5})
            .next("transposed b")
            .input({3, 4})
            .input({5, 4})
            .build(transposed)
            .next("sequence, transposed b")
            .input({2, 3, 4})
            .input({5, 4})
            .build(transposed)
            .next("x · x")
            .input({3, 3})
            .build([](const std::vector<var>& x) { return apply(matmul_op{}, x[0], x[0]); });
    }
};

/// a · b, a of shape (..., k), b of shape (k, n).
[[nodiscard]] inline var matmul(const var& a, const var& b) { return apply(matmul_op{}, a, b); }
/// a · bᵀ, a of shape (..., k), b of shape (n, k) — a PyTorch-layout weight.
[[nodiscard]] inline var matmul_transposed(const var& a, const var& b)
{
    return apply(matmul_op{true}, a, b);
}

} // namespace unfold
