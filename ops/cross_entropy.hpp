#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include <unfold/framework/op.hpp>

namespace unfold
{

/// How a loss combines its per-row terms.
enum class loss_reduction
{
    mean, ///< average over the counted rows (PyTorch's default)
    sum,  ///< plain sum
};

/// loss_r = log Σ_j exp(x_rj) − x_r,t_r for each row r of the logits (the last axis holds the C
/// classes, every leading axis is a row: (N, C) or (T, B, C)), reduced over the rows whose target
/// is not `ignore_index`. Fused and stable: log-sum-exp with the row maximum subtracted.
///
/// Unlike PyTorch, (T, B, C) logits keep the classes on the last axis (PyTorch reads axis 1 as the
/// classes); its equivalent is F.cross_entropy(logits.reshape(-1, C), targets.reshape(-1)).
/// When every target is ignored the mean is 0 with a zero gradient, where PyTorch returns NaN
/// (its 0/0): a fully padded chunk of a batch then contributes nothing instead of turning every
/// parameter into NaN.
struct cross_entropy_op
{
    static constexpr const char* name = "cross_entropy"; ///< in error and anomaly messages
    std::vector<std::int64_t> targets; ///< one class in [0, C) per row, row-major, or ignore_index
    std::int64_t ignore_index = -100;  ///< the target of a row that carries no loss
    loss_reduction reduction = loss_reduction::mean; ///< mean over the counted rows, or sum

    /// The rank-0 loss; throws unless logits have rank ≥ 2 and one valid target per row
    tensor forward(const tensor& logits) const
    {
        UNFOLD_CHECK(logits.dimension() >= 2 && logits.shape().back() > 0,
                     "cross_entropy: logits must be (N, C) or (T, B, C) with C > 0, got shape {}",
                     shape_str(logits.shape()));
        const auto [rows, classes] = as_matrix(logits.shape());
        UNFOLD_CHECK(targets.size() == rows,
                     "cross_entropy: {} targets for logits of shape {}, which has {} rows (one "
                     "target per row)",
                     targets.size(), shape_str(logits.shape()), rows);
        for (std::size_t r = 0; r < rows; ++r)
            UNFOLD_CHECK(targets[r] == ignore_index ||
                             (targets[r] >= 0 && targets[r] < std::int64_t(classes)),
                         "cross_entropy: target {} at position {} is outside [0, {}) for {} "
                         "classes and is not the ignore index {}",
                         targets[r], r, classes, classes, ignore_index);
        double total = 0;
        std::vector<real> e(classes);
        for (std::size_t r = 0; r < rows; ++r)
            if (targets[r] != ignore_index)
            {
                const real* x = logits.data() + r * classes;
                const auto [m, sum] = shifted_exp(x, classes, e.data());
                total += double(m) + std::log(sum) - double(x[targets[r]]);
            }
        const std::size_t n = counted();
        if (reduction == loss_reduction::mean)
            total = n ? total / double(n) : 0.0;
        return full({}, real(total));
    }
    /// dx_r = s · (softmax(x_r) − onehot(t_r)) for counted rows, 0 for ignored ones;
    /// s = gy / (number of counted rows) for the mean, gy for the sum
    void backward(const tensor& logits, const tensor&, const tensor& gy, tensor& gx) const
    {
        const auto [rows, classes] = as_matrix(logits.shape());
        const std::size_t n = counted();
        if (n == 0)
            return;
        const double scale =
            double(gy.data()[0]) / (reduction == loss_reduction::mean ? double(n) : 1.0);
        std::vector<real> e(classes);
        for (std::size_t r = 0; r < rows; ++r)
        {
            if (targets[r] == ignore_index)
                continue;
            const real* x = logits.data() + r * classes;
            real* g = gx.data() + r * classes;
            const real each = real(scale / shifted_exp(x, classes, e.data()).second);
            for (std::size_t j = 0; j < classes; ++j)
                g[j] += each * e[j];
            g[targets[r]] -= real(scale);
        }
    }
    /// The cases check_op gradient-checks.
    static gradcheck_spec check()
    {
        auto with = [](std::vector<std::int64_t> targets, std::int64_t ignore, loss_reduction red) {
            return [=](const std::vector<var>& x) {
                return apply(cross_entropy_op{targets, ignore, red}, x[0]);
            };
        };
        return gradcheck_spec("(N, C)")
            .input({4, 5}, -3, 3)
            .build(with({1, 0, 4, 2}, -100, loss_reduction::mean))
            .next("(N, C), one target ignored")
            .input({4, 5}, -3, 3)
            .build(with({1, -100, 4, 2}, -100, loss_reduction::mean))
            .next("(T, B, C), ignore_index 3")
            .input({2, 3, 4}, -3, 3)
            .build(with({0, 3, 1, 2, 3, 0}, 3, loss_reduction::mean))
            .next("sum reduction")
            .input({3, 4}, -3, 3)
            .build(with({3, 1, 1}, -100, loss_reduction::sum))
            .next("large logits")
            .input({2, 3}, 50, 60)
            .build(with({2, 0}, -100, loss_reduction::mean));
    }

private:
    std::size_t counted() const
    {
        return std::size_t(std::count_if(targets.begin(), targets.end(),
                                         [this](std::int64_t t) { return t != ignore_index; }));
    }
    /// e[j] = exp(x[j] − m) with m the row's maximum (so no term overflows), vectorised; returns
    /// m and Σ_j e[j], summed in double. log Σ exp(x) = m + log(sum).
    static std::pair<real, double> shifted_exp(const real* x, std::size_t n, real* e)
    {
        const real m = *std::max_element(x, x + n);
        transform_simd(x, e, n, [m](auto v) { return xsimd::exp(v - m); });
        double sum = 0;
        for (std::size_t j = 0; j < n; ++j)
            sum += double(e[j]);
        return {m, sum};
    }
};

/// Cross-entropy of `logits` (N, C) or (T, B, C) against integer class `targets`, one per row in
/// row-major order; rows whose target is `ignore_index` are skipped. Returns a rank-0 loss: the
/// mean over the counted rows (0 if none; see cross_entropy_op) or their sum.
[[nodiscard]] inline var cross_entropy(const var& logits, std::vector<std::int64_t> targets,
                                       std::int64_t ignore_index = -100,
                                       loss_reduction reduction = loss_reduction::mean)
{
    return apply(cross_entropy_op{std::move(targets), ignore_index, reduction}, logits);
}

} // namespace unfold
