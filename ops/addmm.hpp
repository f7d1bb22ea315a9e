#pragma once
#include <algorithm>

#include <unfold/framework/gemm.hpp>
#include <unfold/framework/op.hpp>
#include <unfold/ops/matmul.hpp>

namespace unfold
{

/// y = c + a · op(b) for a of shape (..., k), op(b) of shape (k, n) (op(b) = bᵀ when
/// transpose_b, PyTorch's weight layout) and c broadcast to (..., n): a bias row, or a whole
/// pre-activation such as a projected input step. One GEMM with beta = 1 into a copy of c, so
/// `c + matmul(a, b)` costs one result tensor instead of two and one pass less.
struct addmm_op
{
    static constexpr const char* name = "addmm";       ///< in error and anomaly messages
    static constexpr bool skips_unneeded_grads = true; ///< see Note [Unneeded gradients]
    static constexpr bool expensive = true;            ///< kept by recompute::cheap_values (a GEMM)
    static constexpr unsigned backward_reads = 0b0110; ///< a and b: never c or the output
    bool transpose_b = false; ///< multiply by bᵀ: b is (n, k), PyTorch's weight layout
    /// When ≥ 0, c is a sequence (T, ..., n) and block c[block] is added: a projected input step
    /// read in place, without a copy of it on the tape (Note [Input projection]).
    std::ptrdiff_t block = -1;

    /// The product a · op(b) that c is added to.
    matmul_op product() const { return {transpose_b}; }

    /// c (or its block) + a · op(b); throws if the shapes do not fit
    tensor forward(const tensor& c, const tensor& a, const tensor& b) const
    {
        const matmul_op ab = product();
        UNFOLD_CHECK(a.dimension() >= 1 && b.dimension() == 2 && a.shape().back() == ab.k_of(b),
                     "addmm: cannot multiply shapes {} and {}{} (needs (..., k) and {})",
                     shape_str(a.shape()), shape_str(b.shape()), transpose_b ? " transposed" : "",
                     transpose_b ? "(n, k)" : "(k, n)");
        shape_type out = a.shape();
        out.back() = ab.n_of(b);
        tensor y = tensor::from_shape(out);
        if (block >= 0)
        {
            UNFOLD_CHECK(c.dimension() == out.size() + 1 && std::size_t(block) < c.shape()[0] &&
                             std::equal(out.begin(), out.end(), c.shape().begin() + 1),
                         "addmm: block {} of c {} is not a block of the product's shape {}", block,
                         shape_str(c.shape()), shape_str(out));
            const real* first = c.data() + std::size_t(block) * y.size();
            std::copy(first, first + y.size(), y.data());
        }
        else if (c.shape() == out)
            std::copy(c.data(), c.data() + c.size(), y.data());
        else if (c.size() > 0 && is_suffix_broadcast(out, c.shape()))
            for (real *p = y.data(), *end = p + y.size(); p != end; p += c.size())
                std::copy(c.data(), c.data() + c.size(), p);
        else
        {
            UNFOLD_CHECK(broadcast_shape(name, out, c.shape()) == out,
                         "addmm: c of shape {} does not broadcast to the product's shape {}",
                         shape_str(c.shape()), shape_str(out));
            xt::noalias(y) = xt::broadcast(c, out);
        }
        const auto [m, k] = as_matrix(a.shape());
        gemm(false, transpose_b, m, ab.n_of(b), k, 1, a.data(), b.data(), 1, y.data());
        return y;
    }
    /// dc = gy (summed over c's broadcast axes), da = gy · op(b)ᵀ, d op(b) = aᵀ · gy
    void backward(const tensor& c, const tensor& a, const tensor& b, const tensor&,
                  const tensor& gy, tensor& gc, tensor& ga, tensor& gb) const
    {
        if (gc.size() && block >= 0)
        {
            real* first = gc.data() + std::size_t(block) * gy.size();
            const real* g = gy.data();
            for (std::size_t i = 0, n = gy.size(); i < n; ++i)
                first[i] += g[i];
        }
        else if (gc.size())
            accumulate(gc, gy);
        product().backward(a, b, gy /* y: unused */, gy, ga, gb); // da, d op(b) as for a · op(b)
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto plain = [](const std::vector<var>& x) { return apply(addmm_op{}, x[0], x[1], x[2]); };
        auto transposed = [](const std::vector<var>& x) {
            return apply(addmm_op{true}, x[0], x[1], x[2]);
        };
        return gradcheck_spec("matrix")
            .input({3, 5})
            .input({3, 4})
            .input({4, 5})
            .build(plain)
            .next("bias row")
            .input({5})
            .input({3, 4})
            .input({4, 5})
            .build(plain)
            .next("sequence, (1, n) bias")
            .input({1, 5})
            .input({2, 3, 4})
            .input({4, 5})
            .build(plain)
            .next("column broadcast")
            .input({3, 1})
            .input({3, 4})
            .input({4, 5})
            .build(plain)
            .next("transposed b")
            .input({3, 5})
            .input({3, 4})
            .input({5, 4})
            .build(transposed)
            .next("sequence, transposed b, bias")
            .input({5})
            .input({2, 3, 4})
            .input({5, 4})
            .build(transposed)
            .next("block 1 of a sequence c, transposed b")
            .input({3, 2, 5})
            .input({2, 4})
            .input({5, 4})
            .build([](const std::vector<var>& x) {
                return apply(addmm_op{true, 1}, x[0], x[1], x[2]);
            })
            .next("x + x · x")
            .input({3, 3})
            .build([](const std::vector<var>& x) { return apply(addmm_op{}, x[0], x[0], x[0]); });
    }
};

/// c + a · b, a of shape (..., k), b of shape (k, n), c broadcasting to (..., n).
[[nodiscard]] inline var addmm(const var& c, const var& a, const var& b)
{
    return apply(addmm_op{}, c, a, b);
}
/// c + a · bᵀ, a of shape (..., k), b of shape (n, k) — a PyTorch-layout weight.
[[nodiscard]] inline var addmm_transposed(const var& c, const var& a, const var& b)
{
    return apply(addmm_op{true}, c, a, b);
}

} // namespace unfold
