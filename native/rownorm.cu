// Row normalize, forward and backward, over the B*N rows of a [B, N, D] buffer.
//
//   forward:  r_i = max(||x_i||, eps),  xn_i = x_i / r_i,  invNorm_i = 1 / r_i
//   backward: dx_i = (dxn_i - xn_i (xn_i . dxn_i)) / r_i,  or dxn_i / eps where ||x_i|| <= eps
//
// Row i of item b is padding when i >= lengths[b]: its outputs are 0 whatever x holds (so NaN in
// padding never reaches S). Sums of squares and dots are taken in double.
#include <cfloat>

#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace contranorm {
namespace {

constexpr int kWarps = 8;  // warps (rows at a time) per block

__device__ __forceinline__ bool isPadding(const int32_t* lengths, int64_t row, int64_t N) {
  return lengths != nullptr && row % N >= lengths[row / N];
}

// xn_i = x_i * invNorm_i, v_i = x_i (when v is given), invNorm_i = 1 / max(||x_i||, eps).
// One warp owns a row; blocks of kWarps warps stride over the B*N rows. eps >= FLT_MIN.
__global__ void rownorm_fwd_kernel(const float* __restrict__ x, float* __restrict__ xn,
                                   float* __restrict__ invNorm, float* __restrict__ v,
                                   const int32_t* __restrict__ lengths, int64_t rows, int64_t N,
                                   int64_t D, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t{gridDim.x} * kWarps;
  for (int64_t row = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5); row < rows; row += stride) {
    const float* xi = x + row * D;
    float* xni = xn + row * D;
    float* vi = v != nullptr ? v + row * D : nullptr;

    // padding
    if (isPadding(lengths, row, N)) {
      for (int64_t d = lane; d < D; d += 32) {
        xni[d] = 0.f;
        if (vi != nullptr)
          vi[d] = 0.f;
      }
      if (lane == 0)
        invNorm[row] = 0.f;
      continue;
    }

    // reduce
    double ss = 0;
    for (int64_t d = lane; d < D; d += 32) {
      const double t = xi[d];
      ss += t * t;
    }
    ss = warpSum(ss);

    // normalize
    const float inv = 1.f / fmaxf(static_cast<float>(sqrt(ss)), eps);
    for (int64_t d = lane; d < D; d += 32) {
      const float t = xi[d];
      xni[d] = t * inv;
      if (vi != nullptr)
        vi[d] = t;
    }
    if (lane == 0)
      invNorm[row] = inv;
  }
}

// dx_i = (dxn_i - xn_i (xn_i . dxn_i)) * invNorm_i (+ dV_i); the projection is skipped where the
// norm was clamped (invNorm_i >= 1 / eps). One warp per row, as the forward.
__global__ void rownorm_bwd_kernel(const float* __restrict__ xn, const float* __restrict__ invNorm,
                                   const float* __restrict__ dxn, const float* __restrict__ dV,
                                   float* __restrict__ dx, const int32_t* __restrict__ lengths,
                                   int64_t rows, int64_t N, int64_t D, float invEps) {
  const int lane = threadIdx.x & 31;
  const int64_t stride = int64_t{gridDim.x} * kWarps;
  for (int64_t row = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5); row < rows; row += stride) {
    const float* xni = xn + row * D;
    const float* gi = dxn + row * D;
    const float* dvi = dV != nullptr ? dV + row * D : nullptr;
    float* dxi = dx + row * D;

    // padding
    if (isPadding(lengths, row, N)) {
      for (int64_t d = lane; d < D; d += 32)
        dxi[d] = 0.f;
      continue;
    }

    // radial part
    const float inv = invNorm[row];
    double dot = 0;
    if (inv < invEps) {
      for (int64_t d = lane; d < D; d += 32)
        dot += double{xni[d]} * gi[d];
      dot = warpSum(dot);
    }

    // store
    const float dotf = static_cast<float>(dot);
    for (int64_t d = lane; d < D; d += 32) {
      float g = (gi[d] - xni[d] * dotf) * inv;
      if (dvi != nullptr)
        g += dvi[d];
      dxi[d] = g;
    }
  }
}

}  // namespace

void rownorm_fwd(cudaStream_t stream, const float* x, float* xn, float* invNorm, float* v,
                 const int32_t* lengths, int64_t B, int64_t N, int64_t D, float eps) {
  const int64_t rows = B * N;
  if (rows == 0 || D == 0)
    return;
  rownorm_fwd_kernel<<<gridFor(rows, kWarps), kWarps * 32, 0, stream>>>(x, xn, invNorm, v, lengths,
                                                                        rows, N, D, eps);
  CN_LAUNCH_CHECK("rownorm_fwd_kernel");
}

void rownorm_bwd(cudaStream_t stream, const float* xn, const float* invNorm, const float* dxn,
                 const float* dV, float* dx, const int32_t* lengths, int64_t B, int64_t N,
                 int64_t D, float eps) {
  const int64_t rows = B * N;
  if (rows == 0 || D == 0)
    return;
  const float invEps = 1.f / eps;
  rownorm_bwd_kernel<<<gridFor(rows, kWarps), kWarps * 32, 0, stream>>>(
      xn, invNorm, dxn, dV, dx, lengths, rows, N, D, invEps);
  CN_LAUNCH_CHECK("rownorm_bwd_kernel");
}

}  // namespace contranorm
