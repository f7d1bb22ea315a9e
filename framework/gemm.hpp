#pragma once
/// The one GEMM entry point: transposes by flag, never materialised, the backend chosen per call
/// (Note [GEMM backends]) and the thread count chosen per call (Note [BLAS threads]).

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <type_traits>

#include <unfold/framework/backend.hpp>
#include <unfold/framework/error.hpp>
#include <unfold/framework/tensor.hpp>
#include <unfold/framework/threads.hpp>

#if defined(UNFOLD_HAVE_DNNL)
#include <dnnl.h>
#endif

namespace unfold
{

/// Note [GEMM backends]
/// gemm() runs on the CBLAS Unfold links (OpenBLAS) or, in a build with oneDNN (Debian
/// libdnnl-dev; CMake defines UNFOLD_HAVE_DNNL when it finds it), on oneDNN's dnnl_sgemm. The
/// policy, measured by bench/gemm_backends at every GEMM shape of the benchmarked steps and of the
/// language model on one thread (figures in bench/RESULTS.md): a float product whose A is not
/// transposed — the forward x·Wᵀ and the input gradient dy·W of every linear map — goes to oneDNN,
/// which runs those faster at every measured shape; a weight gradient dyᵀ·x (A transposed) stays
/// on OpenBLAS, which runs those faster. Doubles always run on the CBLAS (oneDNN has no double
/// GEMM). Both backends follow the thread policy (oneDNN through OpenMP's thread count).
/// set_gemm_backend, or UNFOLD_GEMM=cblas|dnnl|auto in the environment at the first GEMM, forces
/// one backend for every GEMM (tests, benchmarks, a user's own comparison).
enum class gemm_backend
{
    automatic, ///< the measured policy (gemm_backend_for)
    cblas,     ///< the linked CBLAS: OpenBLAS
    dnnl,      ///< oneDNN's dnnl_sgemm: float only, in builds with oneDNN
};

/// "auto", "cblas" or "dnnl".
inline const char* gemm_backend_name(gemm_backend b)
{
    switch (b)
    {
        case gemm_backend::cblas:
            return "cblas";
        case gemm_backend::dnnl:
            return "dnnl";
        default:
            return "auto";
    }
}

/// True when this build can run GEMMs on `b` (automatic and cblas always; dnnl with oneDNN, in
/// float).
constexpr bool gemm_backend_available(gemm_backend b)
{
#if defined(UNFOLD_HAVE_DNNL)
    constexpr bool dnnl = std::is_same_v<real, float>;
#else
    constexpr bool dnnl = false;
#endif
    return b != gemm_backend::dnnl || dnnl;
}

/// The policy, pure: the backend of a GEMM op(A) m×k times op(B) k×n when dnnl is available
/// (Note [GEMM backends]).
constexpr gemm_backend gemm_backend_for(bool trans_a, bool /*trans_b*/, std::size_t /*m*/,
                                        std::size_t /*n*/, std::size_t /*k*/, bool dnnl_available)
{
    return dnnl_available && !trans_a ? gemm_backend::dnnl : gemm_backend::cblas;
}

namespace detail
{
/// The backend named `name` ("auto", "cblas", "dnnl"); throws for another name or one this build
/// lacks.
inline gemm_backend gemm_backend_named(const std::string& name, const char* from)
{
    for (gemm_backend b : {gemm_backend::automatic, gemm_backend::cblas, gemm_backend::dnnl})
        if (name == gemm_backend_name(b))
        {
            UNFOLD_CHECK(gemm_backend_available(b),
                         "{}: the GEMM backend '{}' is not in this build (oneDNN was not found "
                         "when it was configured, or it is the double build)",
                         from, name);
            return b;
        }
    unfold::fail(
        fmt::format("{}: unknown GEMM backend '{}' (expected auto, cblas or dnnl)", from, name));
}

inline std::atomic<gemm_backend>& forced_backend_slot()
{
    static std::atomic<gemm_backend> forced{[] {
        const char* env = std::getenv("UNFOLD_GEMM");
        return env && *env ? gemm_backend_named(env, "UNFOLD_GEMM") : gemm_backend::automatic;
    }()};
    return forced;
}

/// GEMMs run so far on each backend (cblas, dnnl), so that tests see where a GEMM went.
inline std::array<std::atomic<std::size_t>, 2>& gemm_counts()
{
    static std::array<std::atomic<std::size_t>, 2> counts{};
    return counts;
}

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
#if defined(UNFOLD_HAVE_DNNL)
inline void dnnl_gemm(bool ta, bool tb, std::size_t m, std::size_t n, std::size_t k, float alpha,
                      const float* a, int lda, const float* b, int ldb, float beta, float* c)
{
    const dnnl_status_t status =
        dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', dnnl_dim_t(m), dnnl_dim_t(n), dnnl_dim_t(k),
                   alpha, a, lda, b, ldb, beta, c, dnnl_dim_t(n));
    UNFOLD_CHECK(status == dnnl_success, "gemm: dnnl_sgemm failed (status {}) on {}×{}×{}",
                 int(status), m, n, k);
}
/// oneDNN has no double GEMM: gemm() never sends one here (gemm_backend_available).
inline void dnnl_gemm(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*, int,
                      const double*, int, double, double*)
{
    unfold::fail("gemm: oneDNN has no double GEMM");
}
#endif
} // namespace detail

/// Forces every later GEMM onto `b`; gemm_backend::automatic returns to the policy. Throws
/// unfold::error for a backend this build lacks.
inline void set_gemm_backend(gemm_backend b)
{
    UNFOLD_CHECK(gemm_backend_available(b),
                 "set_gemm_backend: '{}' is not in this build (oneDNN was not found when it was "
                 "configured, or it is the double build)",
                 gemm_backend_name(b));
    detail::forced_backend_slot().store(b, std::memory_order_relaxed);
}

/// The forced backend, or gemm_backend::automatic.
inline gemm_backend forced_gemm_backend()
{
    return detail::forced_backend_slot().load(std::memory_order_relaxed);
}

/// The backend gemm() uses for this product now: the forced one, else the policy's.
inline gemm_backend gemm_backend_used(bool trans_a, bool trans_b, std::size_t m, std::size_t n,
                                      std::size_t k)
{
    const gemm_backend forced = forced_gemm_backend();
    return forced != gemm_backend::automatic
               ? forced
               : gemm_backend_for(trans_a, trans_b, m, n, k,
                                  gemm_backend_available(gemm_backend::dnnl));
}

/// How many GEMMs have run on `b` (cblas or dnnl) in this process.
inline std::size_t gemm_count(gemm_backend b)
{
    return detail::gemm_counts()[b == gemm_backend::dnnl ? 1 : 0].load(std::memory_order_relaxed);
}

/// C = alpha · op(A) · op(B) + beta · C on row-major buffers, op(X) = Xᵀ when the flag is set.
/// op(A) is m×k, op(B) is k×n, C is m×n. Transposes are never materialised. Runs on the backend
/// of Note [GEMM backends], on one thread or on num_threads() by its size (Note [BLAS threads] in
/// framework/threads.hpp).
inline void gemm(bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                 real alpha, const real* a, const real* b, real beta, real* c)
{
    if (m == 0 || n == 0)
        return;
    const int lda = std::max(static_cast<int>(trans_a ? m : k), 1);
    const int ldb = std::max(static_cast<int>(trans_b ? k : n), 1);
#if defined(UNFOLD_HAVE_DNNL)
    if (std::is_same_v<real, float> &&
        gemm_backend_used(trans_a, trans_b, m, n, k) == gemm_backend::dnnl)
    {
        detail::use_openmp_threads_for(m, n, k);
        detail::dnnl_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c);
        detail::gemm_counts()[1].fetch_add(1, std::memory_order_relaxed);
        return;
    }
#endif
    detail::use_blas_threads_for(m, n, k);
    detail::cblas_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                       int(m), int(n), int(k), alpha, a, lda, b, ldb, beta, c, int(n));
    detail::gemm_counts()[0].fetch_add(1, std::memory_order_relaxed);
}

} // namespace unfold
