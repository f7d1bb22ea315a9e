#pragma once
#include <algorithm>
#include <vector>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// y[p] = table[indices[p]] for every position p of an index grid: an embedding lookup.
/// table (V, D) → y (grid..., D)
struct gather_rows_op
{
    static constexpr const char* name = "gather_rows"; ///< in error and anomaly messages
    std::vector<std::size_t> indices; ///< table rows, one per grid position, row-major
    shape_type grid;                  ///< the shape of the index grid, e.g. (n,) or (T, B)

    /// The rows `indices` of table (V, D) as (grid..., D); throws on a bad shape or index
    tensor forward(const tensor& table) const
    {
        UNFOLD_CHECK(table.dimension() == 2, "gather_rows: the table must be (V, D), got shape {}",
                     shape_str(table.shape()));
        UNFOLD_CHECK(element_count(grid) == indices.size(),
                     "gather_rows: {} indices do not fill an index grid of shape {}",
                     indices.size(), shape_str(grid));
        const std::size_t rows = table.shape()[0], d = table.shape()[1];
        shape_type out = grid;
        out.push_back(d);
        tensor y(out);
        for (std::size_t p = 0; p < indices.size(); ++p)
        {
            UNFOLD_CHECK(indices[p] < rows,
                         "gather_rows: index {} at position {} is out of range for a table of "
                         "shape {}",
                         indices[p], position_str(p), shape_str(table.shape()));
            const real* src = table.data() + indices[p] * d;
            std::copy(src, src + d, y.data() + p * d);
        }
        return y;
    }
    /// dtable[indices[p]] += gy[p] for every p (scatter-add: a repeated index sums its rows)
    void backward(const tensor& table, const tensor&, const tensor& gy, tensor& gtable) const
    {
        const std::size_t d = table.shape()[1];
        for (std::size_t p = 0; p < indices.size(); ++p)
        {
            real* dst = gtable.data() + indices[p] * d;
            const real* src = gy.data() + p * d;
            for (std::size_t j = 0; j < d; ++j)
                dst[j] += src[j];
        }
    }
    /// Position p of the grid as "7" for a list of indices, "(1, 2)" for a grid.
    std::string position_str(std::size_t p) const
    {
        if (grid.size() <= 1)
            return std::to_string(p);
        shape_type at(grid.size());
        for (std::size_t d = grid.size(); d-- > 0;)
        {
            at[d] = p % grid[d];
            p /= grid[d];
        }
        return shape_str(at);
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto lookup = [](std::vector<std::size_t> indices, shape_type grid) {
            return [=](const std::vector<var>& x) {
                return apply(gather_rows_op{indices, grid}, x[0]);
            };
        };
        return gradcheck_spec("list with repeats")
            .input({5, 3})
            .build(lookup({1, 3, 1, 0, 1}, {5}))
            .next("(T, B) grid with repeats")
            .input({5, 2})
            .build(lookup({4, 0, 4, 2, 2, 1}, {2, 3}))
            .next("one row")
            .input({4, 3})
            .build(lookup({2}, {1}));
    }
};

/// Rows `indices` of table (V, D): (n, D), n = indices.size(). Rows may repeat; their gradients
/// add up in the table's gradient.
[[nodiscard]] inline var gather_rows(const var& table, std::vector<std::size_t> indices)
{
    shape_type grid{indices.size()};
    return apply(gather_rows_op{std::move(indices), std::move(grid)}, table);
}
/// Rows of table (V, D) for an index grid of shape `grid` given in row-major order, e.g. token ids
/// of shape (T, B) → embeddings (T, B, D).
[[nodiscard]] inline var gather_rows(const var& table, std::vector<std::size_t> indices,
                                     shape_type grid)
{
    return apply(gather_rows_op{std::move(indices), std::move(grid)}, table);
}

} // namespace unfold
