#pragma once
#include <unfold/framework/op.hpp>

namespace unfold
{

/// y = x + a ⊙ b, all of one shape (PyTorch's addcmul with value 1): a gated update such as an
/// LSTM's c' = f ⊙ c + i ⊙ g in one pass and one result instead of two. The compiler may fuse the
/// multiply-add (FMA), so results can differ from `x + a * b` in the last bit.
struct addcmul_op
{
    static constexpr const char* name = "addcmul";     ///< in error and anomaly messages
    static constexpr unsigned backward_reads = 0b0110; ///< a and b (Note [Recomputation])
    static constexpr bool skips_unneeded_grads = true; ///< see Note [Unneeded gradients]

    /// x + a ⊙ b; throws unless the three shapes are equal
    tensor forward(const tensor& x, const tensor& a, const tensor& b) const
    {
        UNFOLD_CHECK(a.shape() == x.shape() && b.shape() == x.shape(),
                     "addcmul: shapes {}, {} and {} differ; x + a ⊙ b needs one shape",
                     shape_str(x.shape()), shape_str(a.shape()), shape_str(b.shape()));
        tensor y = tensor::from_shape(x.shape());
        const real *px = x.data(), *pa = a.data(), *pb = b.data();
        real* py = y.data();
        for (std::size_t i = 0, n = y.size(); i < n; ++i)
            py[i] = px[i] + pa[i] * pb[i];
        return y;
    }
    /// dx = gy, da = gy ⊙ b, db = gy ⊙ a
    void backward(const tensor& x, const tensor& a, const tensor& b, const tensor&,
                  const tensor& gy, tensor& gx, tensor& ga, tensor& gb) const
    {
        const real *pa = a.data(), *pb = b.data(), *pg = gy.data();
        if (gx.size())
        {
            real* p = gx.data();
            for (std::size_t i = 0, n = gx.size(); i < n; ++i)
                p[i] += pg[i];
        }
        if (ga.size())
        {
            real* p = ga.data();
            for (std::size_t i = 0, n = ga.size(); i < n; ++i)
                p[i] += pg[i] * pb[i];
        }
        if (gb.size())
        {
            real* p = gb.data();
            for (std::size_t i = 0, n = gb.size(); i < n; ++i)
                p[i] += pg[i] * pa[i];
        }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        return gradcheck_spec("matrix")
            .input({3, 4})
            .input({3, 4})
            .input({3, 4})
            .build([](const std::vector<var>& v) { return apply(addcmul_op{}, v[0], v[1], v[2]); })
            .next("x + x ⊙ x")
            .input({2, 3})
            .build([](const std::vector<var>& v) { return apply(addcmul_op{}, v[0], v[0], v[0]); });
    }
};

/// x + a ⊙ b, all of one shape.
[[nodiscard]] inline var addcmul(const var& x, const var& a, const var& b)
{
    return apply(addcmul_op{}, x, a, b);
}

} // namespace unfold
