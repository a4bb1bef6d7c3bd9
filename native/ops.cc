// ContraNorm forward and backward on the device: the stages of rownorm.cu, softmax.cu and
// layernorm.cu with the cuBLAS products between them, for a whole batch per launch.
//
//   tokens:   S = xn xn^T [N, N],  xneg = P V,  dP = dxneg V^T,  dV += P^T dxneg,
//             dxn = (dS + dS^T) xn
//   features: S = xn^T xn [D, D],  xneg = V P,  dP = V^T dxneg,  dV += dxneg P^T,
//             dxn = xn (dS + dS^T)
//
// Padding rows are zero in xn and V, so every product stays dense and uniform over the batch;
// the softmax applies lengths and masks.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <string>

#include "contranorm.h"
#include "cuda_check.h"
#include "device.h"
#include "kernels.h"
#include "timing.h"

namespace contranorm {

/** What a forward call keeps for its backward, in device memory. */
class Saved {
 public:
  /** The call's options; `mask` is cleared (the backward does not need it). */
  ForwardDesc desc;
  Block lengths, scale, weight, bias;
  Block xn;        // [B, N, D]
  Block v;         // [B, N, D], x with padding rows zeroed; empty with preNorm (V = xn)
  Block invNorm;   // [B, N]
  Block probs;     // [B, M, M], the row softmax part of P
  Block probsCol;  // [B, M, M], the column softmax part with dualNorm
  Block xneg;      // [B, N, D]
  Block mean;      // [B, N], with LayerNorm
  Block rstd;      // [B, N], with LayerNorm

  size_t bytes() const {
    const Block* all[] = {&lengths, &scale, &weight,   &bias, &xn,   &v,
                          &invNorm, &probs, &probsCol, &xneg, &mean, &rstd};
    size_t total = 0;
    for (const Block* b : all)
      total += b->bytes();
    return total;
  }
};

namespace {

// cuBLAS strided-batched calls take at most this many items at once; larger batches are split.
constexpr int64_t kMaxBatch = 65535;

/** A matrix operand of a row-major product: storage, leading dimension, item stride, transpose. */
struct Operand {
  const float* ptr;
  int64_t ld;
  int64_t stride;
  bool trans;
};

int toInt(int64_t value, const char* what) {
  if (value > INT_MAX) {
    throw Error(ErrorCode::kShape, std::string(what) + " = " + std::to_string(value) +
                                       " exceeds the 32-bit dimensions of cuBLAS");
  }
  return static_cast<int>(value);
}

/**
 * Row-major C[m, n] = op(A)[m, k] op(B)[k, n] + beta C for each of `batch` items. cuBLAS is
 * column-major, where a row-major matrix reads as its transpose, so it computes
 * C^T = op(B)^T op(A)^T: B comes first and m, n swap.
 */
void gemm(CallScope& scope, bool tf32, int64_t m, int64_t n, int64_t k, Operand A, Operand B,
          float beta, float* C, int64_t ldc, int64_t strideC, int64_t batch) {
  const blas::Api& api = cublas();
  const int mi = toInt(m, "a product's rows"), ni = toInt(n, "a product's columns");
  const int ki = toInt(k, "a product's inner dimension");
  const int lda = toInt(A.ld, "a leading dimension"), ldb = toInt(B.ld, "a leading dimension");
  const int ldci = toInt(ldc, "a leading dimension");
  const float alpha = 1.f;
  const int compute = tf32 ? blas::kCompute32FFastTF32 : blas::kCompute32F;
  timing::productBegin(scope.stream());
  for (int64_t first = 0; first < batch; first += kMaxBatch) {
    const int count = static_cast<int>(std::min(kMaxBatch, batch - first));
    CN_CUBLAS_CHECK(api.cublasGemmStridedBatchedEx(
        scope.handle(), B.trans ? blas::kOpT : blas::kOpN, A.trans ? blas::kOpT : blas::kOpN, ni,
        mi, ki, &alpha, B.ptr + first * B.stride, blas::kR32F, ldb, B.stride,
        A.ptr + first * A.stride, blas::kR32F, lda, A.stride, &beta, C + first * strideC,
        blas::kR32F, ldci, strideC, count, compute, blas::kGemmDefault));
  }
  timing::productEnd(scope.stream());
}

/** A device copy of `count` values, owned by `dst`. */
template <class T>
void uploadTo(CallScope& scope, Block& dst, const T* src, size_t count) {
  dst = Block(count * sizeof(T));
  if (count == 0)
    return;
  CN_CUDA_CHECK(
      cudaMemcpyAsync(dst.data(), src, count * sizeof(T), cudaMemcpyHostToDevice, scope.stream()));
}

/** A device copy of `count` values in the call's scratch. */
template <class T>
T* uploadScratch(CallScope& scope, const T* src, size_t count) {
  T* dst = scope.scratch<T>(count);
  if (count == 0)
    return dst;
  CN_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, count * sizeof(T), cudaMemcpyHostToDevice, scope.stream()));
  return dst;
}

/** eps as a float, no smaller than FLT_MIN so that 1 / eps stays finite. */
float epsOf(const ForwardDesc& f) {
  return std::max(static_cast<float>(f.eps), FLT_MIN);
}

/** 1 / tau as a float in [FLT_MIN, FLT_MAX]: the softmax stays finite for any tau in (0, inf). */
float invTauOf(const ForwardDesc& f) {
  const double inv = 1.0 / f.temperature;
  return static_cast<float>(std::min(std::max(inv, double{FLT_MIN}), double{FLT_MAX}));
}

CombineArgs combineArgs(const Saved& s) {
  const ForwardDesc& f = s.desc;
  CombineArgs a;
  a.B = f.B;
  a.N = f.N;
  a.D = f.D;
  a.lengths = s.lengths.as<int32_t>();
  a.scale = s.scale.as<float>();
  a.scaleVector = f.scale.size() > 1;
  a.identity = f.identity;
  a.layerNorm = f.layerNorm;
  a.weight = s.weight.as<float>();
  a.bias = s.bias.as<float>();
  a.lnEps = f.lnEps;
  return a;
}

}  // namespace

size_t savedBytes(const Saved& saved) {
  return saved.bytes();
}

void savedShape(const Saved& saved, int64_t* B, int64_t* N, int64_t* D) {
  *B = saved.desc.B;
  *N = saved.desc.N;
  *D = saved.desc.D;
}

SavedPtr forward(const ForwardDesc& f, const Input& xIn, const Output& yOut) {
  requireCuda();

  // declared before the scope, so that on any exit it is freed after the stream is idle
  auto saved = std::make_shared<Saved>();
  saved->desc = f;
  saved->desc.mask = nullptr;
  const int64_t B = f.B, N = f.N, D = f.D, M = f.features ? D : N;
  const int64_t rows = B * N, elems = rows * D, probsLen = B * M * M;
  if (elems == 0)
    return f.save ? saved : nullptr;

  CallScope scope;
  timing::CallTimer timer(scope.stream(), bench::Op::kForward);
  cudaStream_t stream = scope.stream();
  Saved& s = *saved;

  // parameters
  if (!f.lengths.empty())
    uploadTo(scope, s.lengths, f.lengths.data(), f.lengths.size());
  uploadTo(scope, s.scale, f.scale.data(), f.scale.size());
  if (!f.weight.empty())
    uploadTo(scope, s.weight, f.weight.data(), f.weight.size());
  if (!f.bias.empty())
    uploadTo(scope, s.bias, f.bias.data(), f.bias.size());
  const int32_t* lengths = s.lengths.as<int32_t>();
  const uint8_t* mask = nullptr;
  if (f.mask != nullptr)
    mask = uploadScratch(scope, f.mask, (f.maskBatched ? B : 1) * M * M);

  // input
  const float* x =
      xIn.device != nullptr ? xIn.device->data() : uploadScratch(scope, xIn.host, elems);

  // normalize
  s.xn = Block(elems * sizeof(float));
  s.invNorm = Block(rows * sizeof(float));
  if (!f.preNorm)
    s.v = Block(elems * sizeof(float));
  float* xn = s.xn.as<float>();
  rownorm_fwd(stream, x, xn, s.invNorm.as<float>(), s.v.as<float>(), lengths, B, N, D, epsOf(f));
  const float* V = f.preNorm ? xn : s.v.as<float>();

  // similarity, S = xn xn^T or xn^T xn; the softmax applies the temperature
  s.probs = Block(probsLen * sizeof(float));
  float* S = s.probs.as<float>();
  if (!f.features) {
    gemm(scope, f.tf32, N, N, D, {xn, D, N * D, false}, {xn, D, N * D, true}, 0.f, S, N, N * N, B);
  } else {
    gemm(scope, f.tf32, D, D, N, {xn, D, N * D, true}, {xn, D, N * D, false}, 0.f, S, D, D * D, B);
  }

  // probabilities (the column part first: the row softmax overwrites S)
  SoftmaxArgs sa;
  sa.B = B;
  sa.M = M;
  sa.lengths = f.features ? nullptr : lengths;
  sa.mask = mask;
  sa.maskStride = f.maskBatched ? M * M : 0;
  sa.invTau = invTauOf(f);
  if (f.dualNorm) {
    s.probsCol = Block(probsLen * sizeof(float));
    softmax_cols_fwd(stream, S, s.probsCol.as<float>(), sa);
  }
  softmax_rows_fwd(stream, S, S, sa);

  // mix, xneg = P V or V P, over each part of P
  s.xneg = Block(elems * sizeof(float));
  float* xneg = s.xneg.as<float>();
  const float* parts[] = {s.probs.as<float>(), s.probsCol.as<float>()};
  for (int k = 0; k < (f.dualNorm ? 2 : 1); ++k) {
    const float beta = k == 0 ? 0.f : 1.f;
    if (!f.features) {
      gemm(scope, f.tf32, N, D, N, {parts[k], N, N * N, false}, {V, D, N * D, false}, beta, xneg, D,
           N * D, B);
    } else {
      gemm(scope, f.tf32, N, D, D, {V, D, N * D, false}, {parts[k], D, D * D, false}, beta, xneg, D,
           N * D, B);
    }
  }

  // combine and layer norm
  if (f.layerNorm) {
    s.mean = Block(rows * sizeof(float));
    s.rstd = Block(rows * sizeof(float));
  }
  float* y = yOut.device != nullptr ? yOut.device->data() : scope.scratch<float>(elems);
  combine_fwd(stream, V, xneg, y, s.mean.as<float>(), s.rstd.as<float>(), combineArgs(s));

  // store
  if (yOut.host != nullptr) {
    CN_CUDA_CHECK(
        cudaMemcpyAsync(yOut.host, y, elems * sizeof(float), cudaMemcpyDeviceToHost, stream));
  }
  timer.finish();
  scope.synchronize();
  return f.save ? saved : nullptr;
}

Grads backward(const Saved& s, const Input& dyIn, const Output& dxOut) {
  requireCuda();
  const ForwardDesc& f = s.desc;
  const int64_t B = f.B, N = f.N, D = f.D, M = f.features ? D : N;
  const int64_t rows = B * N, elems = rows * D, probsLen = B * M * M;
  Grads grads;
  grads.dScale.assign(f.scale.size(), 0.f);
  if (!f.weight.empty())
    grads.dWeight.assign(D, 0.f);
  if (!f.bias.empty())
    grads.dBias.assign(D, 0.f);
  if (elems == 0)
    return grads;

  CallScope scope;
  timing::CallTimer timer(scope.stream(), bench::Op::kBackward);
  cudaStream_t stream = scope.stream();
  const int32_t* lengths = s.lengths.as<int32_t>();
  const float* xn = s.xn.as<float>();
  const float* V = f.preNorm ? xn : s.v.as<float>();
  const float* xneg = s.xneg.as<float>();
  const float invTau = invTauOf(f);
  const float* dy =
      dyIn.device != nullptr ? dyIn.device->data() : uploadScratch(scope, dyIn.host, elems);

  // layer norm and combine: dV = c dz, dxneg = -s dz
  float* dz = scope.scratch<float>(elems);
  float* dV = scope.scratch<float>(elems);
  float* dxneg = scope.scratch<float>(elems);
  const CombineArgs ca = combineArgs(s);
  combine_bwd(stream, V, xneg, dy, s.mean.as<float>(), s.rstd.as<float>(), dz, dV, dxneg, ca);

  // channel sums
  double* partial = scope.scratch<double>(channelsScratch(rows, D));
  double* sums = scope.scratch<double>(3 * D);
  channels_bwd(stream, V, xneg, dy, dz, s.mean.as<float>(), s.rstd.as<float>(), partial, sums, ca);

  // dV += P^T dxneg or dxneg P^T over each part of P; dP = dxneg V^T or V^T dxneg
  const float* parts[] = {s.probs.as<float>(), s.probsCol.as<float>()};
  float* dP = scope.scratch<float>(probsLen);
  for (int k = 0; k < (f.dualNorm ? 2 : 1); ++k) {
    if (!f.features) {
      gemm(scope, f.tf32, N, D, N, {parts[k], N, N * N, true}, {dxneg, D, N * D, false}, 1.f, dV, D,
           N * D, B);
    } else {
      gemm(scope, f.tf32, N, D, D, {dxneg, D, N * D, false}, {parts[k], D, D * D, true}, 1.f, dV, D,
           N * D, B);
    }
  }
  if (!f.features) {
    gemm(scope, f.tf32, N, N, D, {dxneg, D, N * D, false}, {V, D, N * D, true}, 0.f, dP, N, N * N,
         B);
  } else {
    gemm(scope, f.tf32, D, D, N, {V, D, N * D, true}, {dxneg, D, N * D, false}, 0.f, dP, D, D * D,
         B);
  }

  // dS, in place over dP unless the column part needs dP afterwards
  float* dS = dP;
  if (f.dualNorm) {
    dS = scope.scratch<float>(probsLen);
    softmax_cols_bwd(stream, s.probsCol.as<float>(), dP, dS, B, M, invTau);
    softmax_rows_bwd(stream, s.probs.as<float>(), dP, dS, B, M, invTau, true);
  } else {
    softmax_rows_bwd(stream, s.probs.as<float>(), dP, dP, B, M, invTau, false);
  }

  // dxn = (dS + dS^T) xn or xn (dS + dS^T); with preNorm it adds onto dV (V is xn)
  float* dxn = f.preNorm ? dV : scope.scratch<float>(elems);
  for (int k = 0; k < 2; ++k) {
    const float beta = (k == 1 || f.preNorm) ? 1.f : 0.f;
    const bool trans = k == 1;
    if (!f.features) {
      gemm(scope, f.tf32, N, D, N, {dS, N, N * N, trans}, {xn, D, N * D, false}, beta, dxn, D,
           N * D, B);
    } else {
      gemm(scope, f.tf32, N, D, D, {xn, D, N * D, false}, {dS, D, D * D, trans}, beta, dxn, D,
           N * D, B);
    }
  }

  // normalize
  float* dx = dxOut.device != nullptr ? dxOut.device->data() : scope.scratch<float>(elems);
  rownorm_bwd(stream, xn, s.invNorm.as<float>(), dxn, f.preNorm ? nullptr : dV, dx, lengths, B, N,
              D, epsOf(f));

  // store
  if (dxOut.host != nullptr) {
    CN_CUDA_CHECK(
        cudaMemcpyAsync(dxOut.host, dx, elems * sizeof(float), cudaMemcpyDeviceToHost, stream));
  }
  std::vector<double> host(3 * D);
  CN_CUDA_CHECK(cudaMemcpyAsync(host.data(), sums, host.size() * sizeof(double),
                                cudaMemcpyDeviceToHost, stream));
  timer.finish();
  scope.synchronize();

  // parameter gradients: ds per channel (summed for a scalar s; times s for log s)
  const double* ds = host.data();
  if (f.scale.size() == 1) {
    double total = 0;
    for (int64_t d = 0; d < D; ++d)
      total += ds[d];
    grads.dScale[0] = static_cast<float>(f.scaleExp ? total * f.scale[0] : total);
  } else {
    for (int64_t d = 0; d < D; ++d) {
      grads.dScale[d] = static_cast<float>(f.scaleExp ? ds[d] * f.scale[d] : ds[d]);
    }
  }
  for (size_t d = 0; d < grads.dWeight.size(); ++d)
    grads.dWeight[d] = static_cast<float>(ds[D + d]);
  for (size_t d = 0; d < grads.dBias.size(); ++d)
    grads.dBias[d] = static_cast<float>(ds[2 * D + d]);
  return grads;
}

}  // namespace contranorm
