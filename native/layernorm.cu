// The residual combine fused with LayerNorm, forward and backward, over the B*N rows of [B, N, D],
// and the channel sums of the backward.
//
//   forward:  z = c V - s xneg  (c = 1 + s with identity, else 1),  y = (z - mean) rstd w + b,
//             rstd = 1 / sqrt(var(z) + lnEps), biased variance by two passes (mean first)
//   backward: g = dy w,  zhat = (z - mean) rstd,  dz = rstd (g - mean(g) - zhat mean(g zhat)),
//             dV = c dz,  dxneg = -s dz;  channel sums ds = ((identity ? V : 0) - xneg) dz,
//             dWeight = dy zhat, dBias = dy over every valid row
//
// z is recomputed from V and xneg wherever it is needed, never stored. Padding rows (i >=
// lengths[b]) get 0 in every output and add nothing to the sums, whatever dy holds there.
#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace contranorm {
namespace {

constexpr int kWarps = 8;               // rows per block in the row kernels
constexpr int kSlices = 8;              // row slices per 32-channel tile in the channel kernel
constexpr int64_t kMinChunkRows = 512;  // rows a channel block sums at least before its partial
constexpr int64_t kMaxChunks = 1024;    // partials per channel at most, so scratch stays small

__device__ __forceinline__ bool isPadding(const int32_t* lengths, int64_t row, int64_t N) {
  return lengths != nullptr && row % N >= lengths[row / N];
}

__device__ __forceinline__ float scaleAt(const CombineArgs& a, int64_t d) {
  return a.scale[a.scaleVector ? d : 0];
}

/** z_d = c_d V_d - s_d xneg_d. */
__device__ __forceinline__ float combineAt(const CombineArgs& a, float v, float xn, int64_t d) {
  const float s = scaleAt(a, d);
  const float c = a.identity ? 1.f + s : 1.f;
  return c * v - s * xn;
}

// y = LayerNorm(z) or z. One warp per row; blocks of kWarps warps stride over the B*N rows.
__global__ void combine_fwd_kernel(const float* __restrict__ V, const float* __restrict__ xneg,
                                   float* __restrict__ y, float* __restrict__ mean,
                                   float* __restrict__ rstd, CombineArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.B * a.N;
  const int64_t D = a.D;
  const int64_t stride = int64_t{gridDim.x} * kWarps;
  for (int64_t row = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5); row < rows; row += stride) {
    const float* vi = V + row * D;
    const float* ni = xneg + row * D;
    float* yi = y + row * D;

    // padding
    if (isPadding(a.lengths, row, a.N)) {
      for (int64_t d = lane; d < D; d += 32)
        yi[d] = 0.f;
      if (a.layerNorm && lane == 0)
        mean[row] = rstd[row] = 0.f;
      continue;
    }
    if (!a.layerNorm) {
      for (int64_t d = lane; d < D; d += 32)
        yi[d] = combineAt(a, vi[d], ni[d], d);
      continue;
    }

    // mean
    double sum = 0;
    for (int64_t d = lane; d < D; d += 32)
      sum += combineAt(a, vi[d], ni[d], d);
    const float mu = static_cast<float>(warpSum(sum) / D);

    // rstd
    double sq = 0;
    for (int64_t d = lane; d < D; d += 32) {
      const double t = combineAt(a, vi[d], ni[d], d) - mu;
      sq += t * t;
    }
    const float r = static_cast<float>(1.0 / sqrt(warpSum(sq) / D + a.lnEps));

    // normalize
    for (int64_t d = lane; d < D; d += 32) {
      float o = (combineAt(a, vi[d], ni[d], d) - mu) * r;
      if (a.weight != nullptr)
        o *= a.weight[d];
      if (a.bias != nullptr)
        o += a.bias[d];
      yi[d] = o;
    }
    if (lane == 0) {
      mean[row] = mu;
      rstd[row] = r;
    }
  }
}

// dz through the LayerNorm (or dz = dy), then dV = c dz and dxneg = -s dz. One warp per row.
__global__ void combine_bwd_kernel(const float* __restrict__ V, const float* __restrict__ xneg,
                                   const float* __restrict__ dy, const float* __restrict__ mean,
                                   const float* __restrict__ rstd, float* __restrict__ dz,
                                   float* __restrict__ dV, float* __restrict__ dxneg,
                                   CombineArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.B * a.N;
  const int64_t D = a.D;
  const int64_t stride = int64_t{gridDim.x} * kWarps;
  for (int64_t row = int64_t{blockIdx.x} * kWarps + (threadIdx.x >> 5); row < rows; row += stride) {
    const int64_t o = row * D;

    // padding
    if (isPadding(a.lengths, row, a.N)) {
      for (int64_t d = lane; d < D; d += 32)
        dz[o + d] = dV[o + d] = dxneg[o + d] = 0.f;
      continue;
    }

    // layer norm: the two row means of g and g * zhat
    float mu = 0.f, r = 1.f, mg = 0.f, mgz = 0.f;
    if (a.layerNorm) {
      mu = mean[row];
      r = rstd[row];
      double sumG = 0, sumGz = 0;
      for (int64_t d = lane; d < D; d += 32) {
        const float zhat = (combineAt(a, V[o + d], xneg[o + d], d) - mu) * r;
        const float g = a.weight != nullptr ? dy[o + d] * a.weight[d] : dy[o + d];
        sumG += g;
        sumGz += double{g} * zhat;
      }
      mg = static_cast<float>(warpSum(sumG) / D);
      mgz = static_cast<float>(warpSum(sumGz) / D);
    }

    // combine
    for (int64_t d = lane; d < D; d += 32) {
      float g = dy[o + d];
      if (a.layerNorm) {
        const float zhat = (combineAt(a, V[o + d], xneg[o + d], d) - mu) * r;
        if (a.weight != nullptr)
          g *= a.weight[d];
        g = r * (g - mg - zhat * mgz);
      }
      const float s = scaleAt(a, d);
      dz[o + d] = g;
      dV[o + d] = (a.identity ? 1.f + s : 1.f) * g;
      dxneg[o + d] = -s * g;
    }
  }
}

// Partial channel sums: a block of 32 x kSlices threads owns 32 channels of one chunk of
// chunkRows rows; thread (x, y) takes rows y, y + kSlices, ... and the slices add in shared
// memory. Writes scratch[chunk][k][d] for k = ds, dWeight, dBias. Blocks stride over the
// ceil(D / 32) * chunks tiles.
__global__ void channels_bwd_kernel(const float* __restrict__ V, const float* __restrict__ xneg,
                                    const float* __restrict__ dy, const float* __restrict__ dz,
                                    const float* __restrict__ mean, const float* __restrict__ rstd,
                                    double* __restrict__ scratch, int64_t chunkRows, int64_t chunks,
                                    CombineArgs a) {
  __shared__ double parts[3][kSlices][32];
  const int64_t rows = a.B * a.N;
  const int64_t D = a.D;
  const int64_t tilesD = (D + 31) / 32;
  for (int64_t t = blockIdx.x; t < tilesD * chunks; t += gridDim.x) {
    __syncthreads();
    const int64_t d = (t % tilesD) * 32 + threadIdx.x;
    const int64_t chunk = t / tilesD;
    const int64_t end = min(rows, (chunk + 1) * chunkRows);

    // reduce this slice
    double ds = 0, dw = 0, db = 0;
    if (d < D) {
      for (int64_t row = chunk * chunkRows + threadIdx.y; row < end; row += kSlices) {
        if (isPadding(a.lengths, row, a.N))
          continue;
        const int64_t o = row * D + d;
        const float v = V[o];
        const float xn = xneg[o];
        ds += double{(a.identity ? v : 0.f) - xn} * dz[o];
        if (a.layerNorm)
          dw += double{dy[o]} * ((combineAt(a, v, xn, d) - mean[row]) * rstd[row]);
        db += dy[o];
      }
    }
    parts[0][threadIdx.y][threadIdx.x] = ds;
    parts[1][threadIdx.y][threadIdx.x] = dw;
    parts[2][threadIdx.y][threadIdx.x] = db;
    __syncthreads();

    // add the slices
    if (threadIdx.y < 3 && d < D) {
      double total = 0;
      for (int k = 0; k < kSlices; ++k)
        total += parts[threadIdx.y][k][threadIdx.x];
      scratch[(chunk * 3 + threadIdx.y) * D + d] = total;
    }
  }
}

// sums[k][d] = sum over chunks of scratch[chunk][k][d], in chunk order. One thread per (k, d).
__global__ void channels_sum_bwd_kernel(const double* __restrict__ scratch,
                                        double* __restrict__ sums, int64_t chunks, int64_t D) {
  const int64_t n = 3 * D;
  for (int64_t kd = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; kd < n;
       kd += int64_t{gridDim.x} * blockDim.x) {
    double total = 0;
    for (int64_t c = 0; c < chunks; ++c)
      total += scratch[c * n + kd];
    sums[kd] = total;
  }
}

/** Rows per chunk of the channel sums: at least kMinChunkRows, and at most kMaxChunks chunks. */
int64_t chunkRowsFor(int64_t rows) {
  const int64_t even = (rows + kMaxChunks - 1) / kMaxChunks;
  return even > kMinChunkRows ? even : kMinChunkRows;
}

int64_t chunksFor(int64_t rows) {
  const int64_t chunkRows = chunkRowsFor(rows);
  return (rows + chunkRows - 1) / chunkRows;
}

}  // namespace

void combine_fwd(cudaStream_t stream, const float* V, const float* xneg, float* y, float* mean,
                 float* rstd, const CombineArgs& a) {
  const int64_t rows = a.B * a.N;
  if (rows == 0 || a.D == 0)
    return;
  combine_fwd_kernel<<<gridFor(rows, kWarps), kWarps * 32, 0, stream>>>(V, xneg, y, mean, rstd, a);
  CN_LAUNCH_CHECK("combine_fwd_kernel");
}

void combine_bwd(cudaStream_t stream, const float* V, const float* xneg, const float* dy,
                 const float* mean, const float* rstd, float* dz, float* dV, float* dxneg,
                 const CombineArgs& a) {
  const int64_t rows = a.B * a.N;
  if (rows == 0 || a.D == 0)
    return;
  combine_bwd_kernel<<<gridFor(rows, kWarps), kWarps * 32, 0, stream>>>(V, xneg, dy, mean, rstd, dz,
                                                                        dV, dxneg, a);
  CN_LAUNCH_CHECK("combine_bwd_kernel");
}

int64_t channelsScratch(int64_t rows, int64_t D) {
  return chunksFor(rows) * 3 * D;
}

void channels_bwd(cudaStream_t stream, const float* V, const float* xneg, const float* dy,
                  const float* dz, const float* mean, const float* rstd, double* scratch,
                  double* sums, const CombineArgs& a) {
  const int64_t rows = a.B * a.N;
  if (rows == 0 || a.D == 0)
    return;
  const int64_t chunks = chunksFor(rows);
  const dim3 block(32, kSlices);
  channels_bwd_kernel<<<gridFor(chunks * ((a.D + 31) / 32), 1), block, 0, stream>>>(
      V, xneg, dy, dz, mean, rstd, scratch, chunkRowsFor(rows), chunks, a);
  CN_LAUNCH_CHECK("channels_bwd_kernel");
  channels_sum_bwd_kernel<<<gridFor(3 * a.D, 256), 256, 0, stream>>>(scratch, sums, chunks, a.D);
  CN_LAUNCH_CHECK("channels_sum_bwd_kernel");
}

}  // namespace contranorm
