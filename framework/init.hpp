#pragma once
/// Initialisers: overwrite a parameter's value in place (shape kept, gradient untouched) from an
/// explicit generator (framework/random.hpp), so an initialisation is reproduced by its seed.
/// The formulas are torch.nn.init's; the random streams are Unfold's own, not PyTorch's.
///
/// Fans follow PyTorch for a weight of shape (out, in, ...): fan_in = in · r and fan_out = out · r,
/// with r the product of the trailing axes (1 for a matrix). Unfold stores weights in PyTorch's
/// (out, in) layout (see ops/matmul.hpp), so a stacked recurrent matrix is (G·H, H).

#include <cmath>
#include <cstddef>
#include <vector>

#include <unfold/framework/param.hpp>
#include <unfold/framework/random.hpp>

namespace unfold::init
{

namespace detail
{
struct fans
{
    double in;
    double out;
};

inline fans fans_of(const char* who, const param& p)
{
    const shape_type& s = p.shape();
    UNFOLD_CHECK(s.size() >= 2,
                 "init::{}: parameter '{}' of shape {} has fewer than 2 axes, so its fans are "
                 "undefined",
                 who, p.name(), shape_str(s));
    double receptive = 1;
    for (std::size_t i = 2; i < s.size(); ++i)
        receptive *= double(s[i]);
    return {double(s[1]) * receptive, double(s[0]) * receptive};
}

/// The orthonormal factor Q of the reduced QR decomposition A = QR of a row-major m×n matrix
/// (m ≥ n), made unique by giving R a non-negative diagonal (PyTorch's sign fix Q · sign(diag R)).
/// Householder reflections in double: Q's columns are orthonormal to rounding error whatever the
/// conditioning of A. Returns Q row-major, m×n.
inline std::vector<double> orthonormal_factor(std::vector<double> a, std::size_t m, std::size_t n)
{
    UNFOLD_ASSERT(m >= n && a.size() == m * n);
    std::vector<std::vector<double>> reflectors(n); // v_k, acting on rows k..m-1
    std::vector<double> diag(n);
    for (std::size_t k = 0; k < n; ++k)
    {
        double norm = 0;
        for (std::size_t i = k; i < m; ++i)
            norm += a[i * n + k] * a[i * n + k];
        norm = std::sqrt(norm);
        const double alpha = a[k * n + k] >= 0 ? -norm : norm; // avoids cancellation in v_0
        std::vector<double>& v = reflectors[k];
        v.clear();
        v.reserve(m - k);
        for (std::size_t i = k; i < m; ++i)
            v.push_back(a[i * n + k]);
        v[0] -= alpha;
        double vv = 0;
        for (double x : v)
            vv += x * x;
        if (vv > 0)
            for (std::size_t c = k; c < n; ++c) // A ← (I − 2vvᵀ/vᵀv) A on rows k..m-1
            {
                double dot = 0;
                for (std::size_t i = k; i < m; ++i)
                    dot += v[i - k] * a[i * n + c];
                const double f = 2 * dot / vv;
                for (std::size_t i = k; i < m; ++i)
                    a[i * n + c] -= f * v[i - k];
            }
        else
            v.clear(); // zero column: the reflection is the identity
        diag[k] = a[k * n + k];
    }
    // Q = H_0 H_1 ⋯ H_{n-1} applied to the first n columns of the identity.
    std::vector<double> q(m * n, 0.0);
    for (std::size_t j = 0; j < n; ++j)
        q[j * n + j] = 1;
    for (std::size_t k = n; k-- > 0;)
    {
        const std::vector<double>& v = reflectors[k];
        if (v.empty())
            continue;
        double vv = 0;
        for (double x : v)
            vv += x * x;
        for (std::size_t c = 0; c < n; ++c)
        {
            double dot = 0;
            for (std::size_t i = k; i < m; ++i)
                dot += v[i - k] * q[i * n + c];
            const double f = 2 * dot / vv;
            for (std::size_t i = k; i < m; ++i)
                q[i * n + c] -= f * v[i - k];
        }
    }
    for (std::size_t j = 0; j < n; ++j)
        if (diag[j] < 0)
            for (std::size_t i = 0; i < m; ++i)
                q[i * n + j] = -q[i * n + j];
    return q;
}
} // namespace detail

/// Fills `p` with draws from U[lo, hi). Throws if lo > hi.
inline void uniform(param p, double lo, double hi, generator& gen)
{
    UNFOLD_CHECK(lo <= hi, "init::uniform: parameter '{}': lo {} exceeds hi {}", p.name(), lo, hi);
    p.assign(gen.uniform(p.shape(), real(lo), real(hi)));
}

/// Fills `p` with draws from N(mean, stddev²). Throws if stddev is negative.
inline void normal(param p, double mean, double stddev, generator& gen)
{
    UNFOLD_CHECK(stddev >= 0, "init::normal: parameter '{}': stddev {} is negative", p.name(),
                 stddev);
    p.assign(gen.normal(p.shape(), real(mean), real(stddev)));
}

/// Fills `p` with `value`.
inline void constant(param p, double value) { p.value().fill(real(value)); }

/// U[−bound, bound) with bound = 1/√fan (PyTorch's default for the weights and biases of its
/// recurrent layers and nn.Linear, with fan = H or in_features). Throws if fan is 0.
inline void inverse_sqrt_uniform(param p, std::size_t fan, generator& gen)
{
    UNFOLD_CHECK(fan > 0, "init::inverse_sqrt_uniform: parameter '{}': fan is 0", p.name());
    const real bound = real(1) / std::sqrt(real(fan));
    uniform(p, -bound, bound, gen);
}

/// Glorot/Xavier uniform: U[−a, a) with a = gain · √(6 / (fan_in + fan_out)), so the variance is
/// gain² · 2 / (fan_in + fan_out). `p` needs at least 2 axes.
inline void xavier_uniform(param p, generator& gen, double gain = 1)
{
    const auto f = detail::fans_of("xavier_uniform", p);
    const double a = gain * std::sqrt(6.0 / (f.in + f.out));
    uniform(p, -a, a, gen);
}

/// Glorot/Xavier normal: N(0, σ²) with σ = gain · √(2 / (fan_in + fan_out)). `p` needs at least
/// 2 axes.
inline void xavier_normal(param p, generator& gen, double gain = 1)
{
    const auto f = detail::fans_of("xavier_normal", p);
    normal(p, 0, gain * std::sqrt(2.0 / (f.in + f.out)), gen);
}

/// (Semi-)orthogonal initialisation (torch.nn.init.orthogonal_), per block: `p` (at least 2 axes,
/// seen as a matrix of shape[0] rows) is split along axis 0 into `blocks` equal row blocks — e.g.
/// blocks = 4 for an LSTM's stacked (4H, H) recurrent matrix, 3 for a GRU's — and each block of
/// shape (r, c) becomes gain · Q, with Q from the QR decomposition of an r×c (or, when r < c,
/// c×r then transposed) standard Gaussian matrix, signs fixed so that R's diagonal is positive.
/// Each block has orthonormal columns when r ≥ c (QᵀQ = I) and orthonormal rows when r < c.
/// Throws if shape[0] is not a multiple of `blocks`.
inline void orthogonal(param p, generator& gen, double gain = 1, std::size_t blocks = 1)
{
    const shape_type& s = p.shape();
    UNFOLD_CHECK(s.size() >= 2,
                 "init::orthogonal: parameter '{}' of shape {} has fewer than 2 axes", p.name(),
                 shape_str(s));
    UNFOLD_CHECK(blocks > 0 && s[0] % blocks == 0,
                 "init::orthogonal: parameter '{}' of shape {} cannot be split into {} row blocks",
                 p.name(), shape_str(s), blocks);
    const std::size_t rows = s[0] / blocks;
    const std::size_t cols = p.size() / s[0];
    const bool tall = rows >= cols;
    const std::size_t m = tall ? rows : cols, n = tall ? cols : rows;
    tensor& value = p.value();
    for (std::size_t b = 0; b < blocks; ++b)
    {
        const tensor gauss = gen.normal({m, n});
        const std::vector<double> q =
            detail::orthonormal_factor(std::vector<double>(gauss.begin(), gauss.end()), m, n);
        real* out = value.data() + b * rows * cols;
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = 0; j < cols; ++j)
                out[i * cols + j] = real(gain * (tall ? q[i * n + j] : q[j * n + i]));
    }
}

} // namespace unfold::init
