#pragma once
/// A fully connected layer with PyTorch nn.Linear's parameters: y = x Wᵀ + b.

#include <cmath>
#include <string>

#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/ops/addmm.hpp>

namespace unfold
{

/// y = x Wᵀ + b with weight W (out, in) and bias b (out); x may be (…, in) — every leading axis is
/// a row, so a whole (T, B, in) sequence is one GEMM giving (T, B, out).
struct linear
{
    param weight; ///< W (out, in)
    param bias;   ///< b (out)

    /// x Wᵀ + b for x (…, in), binding the parameters on `t`: (…, out).
    var operator()(tape& t, const var& x) const
    {
        return addmm_transposed(t[bias], x, t[weight]); // one GEMM onto the broadcast bias
    }

    /// Parameters prefix + "weight", prefix + "bias" added to `store`, drawn from
    /// uniform(−1/√in, 1/√in) as PyTorch's default initialisation does.
    static linear create(param_store& store, std::size_t in_features, std::size_t out_features,
                         generator& g, const std::string& prefix = "")
    {
        const real k = real(1) / std::sqrt(real(in_features));
        return {store.add(prefix + "weight", g.uniform({out_features, in_features}, -k, k)),
                store.add(prefix + "bias", g.uniform({out_features}, -k, k))};
    }
};

} // namespace unfold
