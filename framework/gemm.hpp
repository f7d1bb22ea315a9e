#pragma once
/// The one GEMM entry point, over CBLAS: transposes by flag, never materialised, and the BLAS
/// thread count chosen per call (Note [BLAS threads]).

#include <algorithm>
#include <cstddef>

#include <unfold/framework/backend.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/framework/threads.hpp>

namespace unfold
{

namespace detail
{
inline void cblas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha,
                       const float* a, int lda, const float* b, int ldb, float beta, float* c,
                       int ldc)
{
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void cblas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha,
                       const double* a, int lda, const double* b, int ldb, double beta, double* c,
                       int ldc)
{
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
} // namespace detail

/// C = alpha · op(A) · op(B) + beta · C on row-major buffers, op(X) = Xᵀ when the flag is set.
/// op(A) is m×k, op(B) is k×n, C is m×n. Transposes are never materialised. Runs on one BLAS
/// thread or on num_threads() by its size (Note [BLAS threads] in framework/threads.hpp).
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                 real alpha, const real* a, const real* b, real beta, real* c)
{
    if (m == 0 || n == 0)
        return;
    const auto ta = trans_a ? CblasTrans : CblasNoTrans;
    const auto tb = trans_b ? CblasTrans : CblasNoTrans;
    const int lda = static_cast<int>(trans_a ? m : k);
    const int ldb = static_cast<int>(trans_b ? k : n);
    detail::use_blas_threads_for(m, n, k);
    detail::cblas_gemm(ta, tb, int(m), int(n), int(k), alpha, a, std::max(lda, 1), b,
                       std::max(ldb, 1), beta, c, int(n));
}

} // namespace unfold
