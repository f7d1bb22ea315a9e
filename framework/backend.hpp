#pragma once
/// The one place where xtensor, xsimd and BLAS are included.
/// xtensor 0.26 moved every header (xtensor/xarray.hpp -> xtensor/containers/xarray.hpp); when
/// Debian upgrades, only this file changes.

#include <xtensor/xarray.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xio.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>
#include <xtensor/xoperation.hpp>
#include <xtensor/xrandom.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xsort.hpp>
#include <xtensor/xstrided_view.hpp>
#include <xtensor/xview.hpp>

#include <xsimd/xsimd.hpp>

#include <cblas.h>

/// Per-thread state (grad mode, the anomaly site). clang-repl-16 crashes when a later input uses
/// a thread_local variable, so the notebook kernel (one thread) defines UNFOLD_NO_THREAD_LOCAL.
#ifdef UNFOLD_NO_THREAD_LOCAL
#define UNFOLD_THREAD_LOCAL static
#else
#define UNFOLD_THREAD_LOCAL thread_local
#endif
