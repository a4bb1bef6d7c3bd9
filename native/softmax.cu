// Masked softmax of S over the rows (and, for dualNorm, the columns) of B matrices [M, M],
// forward and backward.
//
//   forward:  P_ij = exp((S_ij - m_i) / tau) / sum_k exp((S_ik - m_i) / tau) over included j
//   backward: dS_ij = P_ij (G_ij - sum_k G_ik P_ik) / tau
//
// Entry (i, j) of item b is excluded when mask[b][i][j] is set or, in tokens mode, i or j is at or
// past lengths[b]. Excluded entries get P = 0; a row (column) with every entry excluded is all 0,
// never NaN. The maximum is subtracted before exp, so no tau overflows. Rows of up to 1024 go to a
// warp each with the row in registers; longer rows to a block each, kept in shared memory up to
// kCachedMax entries and read twice beyond that (online max and sum, then the store).
#include <cfloat>

#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace contranorm {
namespace {

constexpr int kWarps = 8;             // rows per block in the warp kernels
constexpr int kBlock = 256;           // threads per row in the block kernels
constexpr int64_t kWarpMax = 1024;    // longest row a warp holds in registers
constexpr int64_t kCachedMax = 4096;  // longest row a block keeps in shared memory
constexpr int kColSlices = 8;         // row slices per 32-column tile in the column kernels

__device__ __forceinline__ int64_t validOf(const SoftmaxArgs& a, int64_t b) {
  return a.lengths != nullptr ? a.lengths[b] : a.M;
}

/** Entry (i, j) of item b is excluded; i < L is known. */
__device__ __forceinline__ bool excluded(const SoftmaxArgs& a, int64_t b, int64_t i, int64_t j,
                                         int64_t L) {
  return j >= L || (a.mask != nullptr && a.mask[b * a.maskStride + i * a.M + j] != 0);
}

// How a row softmax kernel holds its rows: K > 0, a warp per row with K values per lane in
// registers (M <= 32 K); kBlockCached, a block per row with the row in shared memory (M <=
// kCachedMax); kBlockTwice, a block per row reading S twice (online max and sum, then the store).
constexpr int kBlockCached = 0;
constexpr int kBlockTwice = -1;

// Row softmax over the B*M rows. A warp (K > 0: blocks of kWarps warps) or a block (kBlock
// threads) owns a row; both stride over rows. P may be S: every value is read before it is
// overwritten.
template <int K>
__global__ void softmax_rows_fwd_kernel(const float* S, float* P, SoftmaxArgs a) {
  const int64_t rows = a.B * a.M;
  if constexpr (K > 0) {
    const int lane = threadIdx.x & 31;
    const int64_t stride = int64_t{gridDim.x} * kWarps;
    for (int64_t row = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5); row < rows;
         row += stride) {
      const int64_t b = row / a.M;
      const int64_t i = row % a.M;
      const int64_t L = validOf(a, b);
      const float* s = S + row * a.M;
      float* p = P + row * a.M;

      // load, max
      float v[K];
      float m = -INFINITY;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t j = lane + 32 * k;
        v[k] = (i < L && j < a.M && !excluded(a, b, i, j, L)) ? s[j] : -INFINITY;
        m = fmaxf(m, v[k]);
      }
      m = warpMax(m);

      // exp, sum (a fully excluded row stays all 0)
      float sum = 0.f;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        v[k] = v[k] == -INFINITY ? 0.f : expf((v[k] - m) * a.invTau);
        sum += v[k];
      }
      sum = warpSum(sum);
      const float inv = sum > 0.f ? 1.f / sum : 0.f;

      // store
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t j = lane + 32 * k;
        if (j < a.M)
          p[j] = v[k] * inv;
      }
    }
  } else {
    constexpr bool kCached = K == kBlockCached;
    extern __shared__ float cache[];
    __shared__ MaxSum scratch[32];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
      __syncthreads();  // the previous row is done with cache and scratch
      const int64_t b = row / a.M;
      const int64_t i = row % a.M;
      const int64_t L = validOf(a, b);
      const float* s = S + row * a.M;
      float* p = P + row * a.M;
      if (i >= L) {
        for (int64_t j = threadIdx.x; j < a.M; j += blockDim.x)
          p[j] = 0.f;
        continue;
      }

      // max and sum, online
      MaxSum part{-INFINITY, 0.f};
      for (int64_t j = threadIdx.x; j < a.M; j += blockDim.x) {
        const float v = excluded(a, b, i, j, L) ? -INFINITY : s[j];
        if (kCached)
          cache[j] = v;
        if (v != -INFINITY)
          addEntry(part, v, a.invTau);
      }
      const MaxSum all = blockMerge(part, a.invTau, scratch);
      const float inv = all.sum > 0.f ? 1.f / all.sum : 0.f;

      // store
      for (int64_t j = threadIdx.x; j < a.M; j += blockDim.x) {
        const float v = kCached ? cache[j] : (excluded(a, b, i, j, L) ? -INFINITY : s[j]);
        p[j] = v == -INFINITY ? 0.f : expf((v - all.m) * a.invTau) * inv;
      }
    }
  }
}

// Column softmax: a block of 32 x kColSlices threads owns 32 columns of one item; thread (x, y)
// takes rows y, y + kColSlices, ... of column x, and the slices merge in shared memory. Blocks
// stride over the B * ceil(M / 32) tiles. P must not be S.
__global__ void softmax_cols_fwd_kernel(const float* __restrict__ S, float* __restrict__ P,
                                        SoftmaxArgs a) {
  __shared__ MaxSum parts[kColSlices][32];
  const int64_t tilesPerItem = (a.M + 31) / 32;
  const int64_t tiles = a.B * tilesPerItem;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    __syncthreads();
    const int64_t b = tile / tilesPerItem;
    const int64_t j = (tile % tilesPerItem) * 32 + threadIdx.x;
    const int64_t L = validOf(a, b);
    const float* s = S + b * a.M * a.M;
    float* p = P + b * a.M * a.M;

    // max and sum, online over this slice of the column
    MaxSum part{-INFINITY, 0.f};
    for (int64_t i = threadIdx.y; i < L; i += kColSlices) {
      if (!excluded(a, b, i, j, L))
        addEntry(part, s[i * a.M + j], a.invTau);
    }
    parts[threadIdx.y][threadIdx.x] = part;
    __syncthreads();
    MaxSum all = parts[0][threadIdx.x];
    for (int k = 1; k < kColSlices; ++k)
      all = merge(all, parts[k][threadIdx.x], a.invTau);
    const float inv = all.sum > 0.f ? 1.f / all.sum : 0.f;

    // store
    if (j >= a.M)
      continue;
    for (int64_t i = threadIdx.y; i < a.M; i += kColSlices) {
      float out = 0.f;
      if (i < L && !excluded(a, b, i, j, L))
        out = expf((s[i * a.M + j] - all.m) * a.invTau) * inv;
      p[i * a.M + j] = out;
    }
  }
}

// Row backward over the B*M rows: a warp per row (blocks of kWarps warps), or with kBlock a
// block per row; either reads the row twice (dot, then store), so any M fits. dS may be G unless
// accumulating.
template <bool kBlock>
__global__ void softmax_rows_bwd_kernel(const float* __restrict__ P, const float* G, float* dS,
                                        int64_t rows, int64_t M, float invTau, bool accumulate) {
  __shared__ float scratch[32];
  const int lane = threadIdx.x & 31;
  const int64_t first =
      kBlock ? int64_t{blockIdx.x} : int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5);
  const int64_t stride = kBlock ? int64_t{gridDim.x} : int64_t{gridDim.x} * kWarps;
  const int64_t start = kBlock ? threadIdx.x : lane;
  const int64_t step = kBlock ? blockDim.x : 32;
  for (int64_t row = first; row < rows; row += stride) {
    if (kBlock)
      __syncthreads();  // the previous row is done with scratch
    const float* p = P + row * M;
    const float* g = G + row * M;
    float* ds = dS + row * M;

    // dot
    float dot = 0.f;
    for (int64_t j = start; j < M; j += step)
      dot += g[j] * p[j];
    dot = kBlock ? blockSum(dot, scratch) : warpSum(dot);

    // store
    for (int64_t j = start; j < M; j += step) {
      const float t = p[j] * (g[j] - dot) * invTau;
      ds[j] = accumulate ? ds[j] + t : t;
    }
  }
}

// Column backward: tiles of 32 columns as the column forward; writes dS (never G).
__global__ void softmax_cols_bwd_kernel(const float* __restrict__ P, const float* __restrict__ G,
                                        float* __restrict__ dS, int64_t B, int64_t M,
                                        float invTau) {
  __shared__ float parts[kColSlices][32];
  const int64_t tilesPerItem = (M + 31) / 32;
  const int64_t tiles = B * tilesPerItem;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    __syncthreads();
    const int64_t b = tile / tilesPerItem;
    const int64_t j = (tile % tilesPerItem) * 32 + threadIdx.x;
    const float* p = P + b * M * M;
    const float* g = G + b * M * M;
    float* ds = dS + b * M * M;

    // dot
    float dot = 0.f;
    if (j < M) {
      for (int64_t i = threadIdx.y; i < M; i += kColSlices)
        dot += g[i * M + j] * p[i * M + j];
    }
    parts[threadIdx.y][threadIdx.x] = dot;
    __syncthreads();
    dot = 0.f;
    for (int k = 0; k < kColSlices; ++k)
      dot += parts[k][threadIdx.x];

    // store
    if (j >= M)
      continue;
    for (int64_t i = threadIdx.y; i < M; i += kColSlices) {
      ds[i * M + j] = p[i * M + j] * (g[i * M + j] - dot) * invTau;
    }
  }
}

template <int K>
void launchRowsForward(cudaStream_t stream, const float* S, float* P, const SoftmaxArgs& a) {
  if constexpr (K > 0) {
    softmax_rows_fwd_kernel<K><<<gridFor(a.B * a.M, kWarps), kWarps * 32, 0, stream>>>(S, P, a);
  } else {
    const size_t shared = K == kBlockCached ? static_cast<size_t>(a.M) * sizeof(float) : 0;
    softmax_rows_fwd_kernel<K><<<gridFor(a.B * a.M, 1), kBlock, shared, stream>>>(S, P, a);
  }
  CN_LAUNCH_CHECK("softmax_rows_fwd_kernel");
}

}  // namespace

void softmax_rows_fwd(cudaStream_t stream, const float* S, float* P, const SoftmaxArgs& a) {
  if (a.B == 0 || a.M == 0)
    return;
  if (a.M <= 32)
    return launchRowsForward<1>(stream, S, P, a);
  if (a.M <= 64)
    return launchRowsForward<2>(stream, S, P, a);
  if (a.M <= 128)
    return launchRowsForward<4>(stream, S, P, a);
  if (a.M <= 256)
    return launchRowsForward<8>(stream, S, P, a);
  if (a.M <= 512)
    return launchRowsForward<16>(stream, S, P, a);
  if (a.M <= kWarpMax)
    return launchRowsForward<32>(stream, S, P, a);
  if (a.M <= kCachedMax)
    return launchRowsForward<kBlockCached>(stream, S, P, a);
  launchRowsForward<kBlockTwice>(stream, S, P, a);
}

void softmax_cols_fwd(cudaStream_t stream, const float* S, float* P, const SoftmaxArgs& a) {
  if (a.B == 0 || a.M == 0)
    return;
  const dim3 block(32, kColSlices);
  softmax_cols_fwd_kernel<<<gridFor(a.B * ((a.M + 31) / 32), 1), block, 0, stream>>>(S, P, a);
  CN_LAUNCH_CHECK("softmax_cols_fwd_kernel");
}

void softmax_rows_bwd(cudaStream_t stream, const float* P, const float* G, float* dS, int64_t B,
                      int64_t M, float invTau, bool accumulate) {
  const int64_t rows = B * M;
  if (rows == 0)
    return;
  if (M <= kWarpMax) {
    softmax_rows_bwd_kernel<false>
        <<<gridFor(rows, kWarps), kWarps * 32, 0, stream>>>(P, G, dS, rows, M, invTau, accumulate);
  } else {
    softmax_rows_bwd_kernel<true>
        <<<gridFor(rows, 1), kBlock, 0, stream>>>(P, G, dS, rows, M, invTau, accumulate);
  }
  CN_LAUNCH_CHECK("softmax_rows_bwd_kernel");
}

void softmax_cols_bwd(cudaStream_t stream, const float* P, const float* G, float* dS, int64_t B,
                      int64_t M, float invTau) {
  if (B == 0 || M == 0)
    return;
  const dim3 block(32, kColSlices);
  softmax_cols_bwd_kernel<<<gridFor(B * ((M + 31) / 32), 1), block, 0, stream>>>(P, G, dS, B, M,
                                                                                 invTau);
  CN_LAUNCH_CHECK("softmax_cols_bwd_kernel");
}

}  // namespace contranorm
