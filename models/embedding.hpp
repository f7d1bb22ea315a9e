#pragma once
/// A lookup table of learned vectors with PyTorch nn.Embedding's parameter: y[p] = W[index[p]].

#include <string>
#include <vector>

#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>
#include <unfold/framework/tape.hpp>
#include <unfold/ops/gather_rows.hpp>

namespace unfold
{

/// weight (V, D): row v is the vector of token v. Gradients of repeated tokens add up.
struct embedding
{
    param weight; ///< (V, D): row v is the vector of token v

    /// The vectors of `indices` (each < V), shape (n, D).
    var operator()(tape& t, const std::vector<std::size_t>& indices) const
    {
        check(indices);
        return gather_rows(t[weight], indices);
    }
    /// The vectors of a grid of indices given row-major, e.g. grid (T, B) → (T, B, D): a batch of
    /// token sequences ready for a recurrent layer.
    var operator()(tape& t, const std::vector<std::size_t>& indices, const shape_type& grid) const
    {
        check(indices);
        return gather_rows(t[weight], indices, grid);
    }

    /// Throws naming the table when an index is not a row of it.
    void check(const std::vector<std::size_t>& indices) const
    {
        const std::size_t rows = weight.shape()[0];
        for (std::size_t p = 0; p < indices.size(); ++p)
            UNFOLD_CHECK(indices[p] < rows,
                         "embedding '{}' {}: index {} at position {} is outside [0, {}) (a token "
                         "beyond the vocabulary)",
                         weight.name(), shape_str(weight.shape()), indices[p], p, rows);
    }

    /// Parameter prefix + "weight" (num_embeddings, dim) added to `store`, drawn from N(0, 1) as
    /// PyTorch's default initialisation does.
    static embedding create(param_store& store, std::size_t num_embeddings, std::size_t dim,
                            generator& g, const std::string& prefix = "")
    {
        return {store.add(prefix + "weight", g.normal({num_embeddings, dim}))};
    }
};

} // namespace unfold
