// Launchers of the kernels in rownorm.cu, softmax.cu and layernorm.cu. Each checks its launch.
// Shapes are row-major; row r of a [B, N, D] buffer is row r % N of item r / N. Sizes and
// offsets are 64-bit throughout, and no grid dimension caps B.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace contranorm {

// ----- rownorm.cu -----

/**
 * xn_i = x_i / max(||x_i||, eps) and invNorm_i = 1 / max(||x_i||, eps) for every row of [B, N, D];
 * `v` (when not null) receives a copy of x. Padding rows (i >= lengths[b]) get 0 in every output.
 */
void rownorm_fwd(cudaStream_t stream, const float* x, float* xn, float* invNorm, float* v,
                 const int32_t* lengths, int64_t B, int64_t N, int64_t D, float eps);

/**
 * dx_i = (dxn_i - xn_i (xn_i . dxn_i)) invNorm_i, or dxn_i invNorm_i for a row whose norm was
 * clamped to eps; plus dV_i when dV is not null. Padding rows get 0.
 */
void rownorm_bwd(cudaStream_t stream, const float* xn, const float* invNorm, const float* dxn,
                 const float* dV, float* dx, const int32_t* lengths, int64_t B, int64_t N,
                 int64_t D, float eps);

// ----- softmax.cu -----

/** The [B, M, M] matrices a softmax runs over and what it excludes. */
struct SoftmaxArgs {
  int64_t B = 0;
  int64_t M = 0;
  /** Tokens mode: valid rows and columns per item (the rest excluded); null for all M. */
  const int32_t* lengths = nullptr;
  /** Non-zero = excluded; null for none. */
  const uint8_t* mask = nullptr;
  /** 0 for one [M, M] mask shared by the items, M * M for a [B, M, M] mask. */
  int64_t maskStride = 0;
  /** 1 / tau, in [FLT_MIN, FLT_MAX]. */
  float invTau = 1;
};

/** P_ij = exp((S_ij - max_j S_ij) / tau) / sum over each row; P may be S (in place). */
void softmax_rows_fwd(cudaStream_t stream, const float* S, float* P, const SoftmaxArgs& args);

/** The same over each column (i runs); P must not be S. */
void softmax_cols_fwd(cudaStream_t stream, const float* S, float* P, const SoftmaxArgs& args);

/**
 * dS_ij (+)= P_ij (G_ij - sum_k G_ik P_ik) / tau over rows of [B, M, M]; dS may be G when not
 * accumulating.
 */
void softmax_rows_bwd(cudaStream_t stream, const float* P, const float* G, float* dS, int64_t B,
                      int64_t M, float invTau, bool accumulate);

/** dS_ij = P_ij (G_ij - sum_k G_kj P_kj) / tau over columns; dS must not be G. */
void softmax_cols_bwd(cudaStream_t stream, const float* P, const float* G, float* dS, int64_t B,
                      int64_t M, float invTau);

// ----- layernorm.cu -----

/** The residual combine z = c V - s xneg (c = 1 + s with identity, else 1) and its LayerNorm. */
struct CombineArgs {
  int64_t B = 0, N = 0, D = 0;
  const int32_t* lengths = nullptr;
  /** s, length D when scaleVector, else length 1. */
  const float* scale = nullptr;
  bool scaleVector = false;
  bool identity = false;
  bool layerNorm = true;
  /** Gain and shift, length D, or null. */
  const float* weight = nullptr;
  const float* bias = nullptr;
  double lnEps = 1e-6;
};

/** y = LayerNorm(z) (or z), saving mean and rstd per row with LayerNorm. Padding rows get 0. */
void combine_fwd(cudaStream_t stream, const float* V, const float* xneg, float* y, float* mean,
                 float* rstd, const CombineArgs& args);

/** dz from dy through the LayerNorm, then dV = c dz and dxneg = -s dz. Padding rows get 0. */
void combine_bwd(cudaStream_t stream, const float* V, const float* xneg, const float* dy,
                 const float* mean, const float* rstd, float* dz, float* dV, float* dxneg,
                 const CombineArgs& args);

/** Doubles of scratch that channels_bwd needs for D channels and `rows` rows. */
int64_t channelsScratch(int64_t rows, int64_t D);

/**
 * The channel sums over every valid row, as doubles in `sums` ([3, D]): ds = ((identity ? V : 0)
 * - xneg) dz, dWeight = dy zhat, dBias = dy. Deterministic: fixed chunks, no atomics.
 */
void channels_bwd(cudaStream_t stream, const float* V, const float* xneg, const float* dy,
                  const float* dz, const float* mean, const float* rstd, double* scratch,
                  double* sums, const CombineArgs& args);

}  // namespace contranorm
