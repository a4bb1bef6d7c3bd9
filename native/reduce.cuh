// Warp and block reductions, and the merge of two partial softmax states (max, sum of exp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace contranorm {

constexpr unsigned kFullMask = 0xffffffffu;

template <class T>
__device__ __forceinline__ T warpSum(T v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

/**
 * The sum over a block whose size is a multiple of 32, returned to every thread. `scratch` holds
 * 32 values; the caller syncs before using it again.
 */
template <class T>
__device__ __forceinline__ T blockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warpSum(v);
  if (lane == 0)
    scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? scratch[lane] : T(0);
    w = warpSum(w);
    if (lane == 0)
      scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}

/**
 * A partial softmax over some entries of a row: their maximum m and sum of exp((v - m) / tau).
 * An empty part has m = -inf and sum = 0.
 */
struct MaxSum {
  float m;
  float sum;
};

/** Folds entry v into a partial. */
__device__ __forceinline__ void addEntry(MaxSum& a, float v, float invTau) {
  if (v > a.m) {
    // rescale what was summed against the new maximum (an empty part adds nothing)
    a.sum = (a.m == -INFINITY ? 0.f : a.sum * expf((a.m - v) * invTau)) + 1.f;
    a.m = v;
  } else {
    a.sum += expf((v - a.m) * invTau);
  }
}

/** Two partials as one; empty parts (m = -inf) are skipped, so no inf - inf arises. */
__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b, float invTau) {
  if (b.m == -INFINITY)
    return a;
  if (a.m == -INFINITY)
    return b;
  const float m = fmaxf(a.m, b.m);
  return {m, a.sum * expf((a.m - m) * invTau) + b.sum * expf((b.m - m) * invTau)};
}

__device__ __forceinline__ MaxSum warpMerge(MaxSum a, float invTau) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    MaxSum b{__shfl_xor_sync(kFullMask, a.m, offset), __shfl_xor_sync(kFullMask, a.sum, offset)};
    a = merge(a, b, invTau);
  }
  return a;
}

/** The merge over a block (size a multiple of 32), returned to every thread. */
__device__ __forceinline__ MaxSum blockMerge(MaxSum a, float invTau, MaxSum* scratch) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  a = warpMerge(a, invTau);
  if (lane == 0)
    scratch[warp] = a;
  __syncthreads();
  if (warp == 0) {
    MaxSum w = lane < warps ? scratch[lane] : MaxSum{-INFINITY, 0.f};
    w = warpMerge(w, invTau);
    if (lane == 0)
      scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}

/** Blocks for `work` units of `perBlock` each, at least 1 and at most 2^20: kernels stride. */
inline unsigned gridFor(int64_t work, int64_t perBlock) {
  int64_t blocks = (work + perBlock - 1) / perBlock;
  if (blocks < 1)
    blocks = 1;
  if (blocks > (int64_t{1} << 20))
    blocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks);
}

}  // namespace contranorm
