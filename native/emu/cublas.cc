// A CPU stand-in for the four cuBLAS entry points the module opens (see build.sh): column-major
// strided-batched GEMM with float sums in order, TF32 emulated by rounding the inputs to 10
// mantissa bits. Arguments are checked as cuBLAS checks them.
#include <cstdint>
#include <cstring>

namespace {

struct Context {
  void* stream = nullptr;
};

float tf32(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = (bits + 0x1000u) & 0xffffe000u;
  std::memcpy(&v, &bits, 4);
  return v;
}

}  // namespace

extern "C" {

int cublasCreate_v2(Context** handle) {
  *handle = new Context();
  return 0;
}

int cublasDestroy_v2(Context* handle) {
  delete handle;
  return 0;
}

int cublasSetStream_v2(Context* handle, void* stream) {
  if (handle == nullptr)
    return 1;
  handle->stream = stream;
  return 0;
}

int cublasGemmStridedBatchedEx(Context* handle, int transa, int transb, int m, int n, int k,
                               const void* alpha, const void* A, int Atype, int lda,
                               long long strideA, const void* B, int Btype, int ldb,
                               long long strideB, const void* beta, void* C, int Ctype, int ldc,
                               long long strideC, int batch, int compute, int algo) {
  if (handle == nullptr)
    return 1;
  if (Atype != 0 || Btype != 0 || Ctype != 0 || (compute != 68 && compute != 77) || algo != -1) {
    return 15;
  }
  const int rowsA = transa == 0 ? m : k;
  const int rowsB = transb == 0 ? k : n;
  if ((transa != 0 && transa != 1) || (transb != 0 && transb != 1) || m < 0 || n < 0 || k < 0 ||
      batch < 0 || lda < (rowsA > 1 ? rowsA : 1) || ldb < (rowsB > 1 ? rowsB : 1) ||
      ldc < (m > 1 ? m : 1)) {
    return 7;
  }
  const float a = *static_cast<const float*>(alpha);
  const float b = *static_cast<const float*>(beta);
  const bool fast = compute == 77;
  for (int item = 0; item < batch; ++item) {
    const float* Ai = static_cast<const float*>(A) + item * strideA;
    const float* Bi = static_cast<const float*>(B) + item * strideB;
    float* Ci = static_cast<float*>(C) + item * strideC;
    for (int j = 0; j < n; ++j) {
      for (int i = 0; i < m; ++i) {
        float sum = 0.f;
        for (int l = 0; l < k; ++l) {
          float x = transa == 0 ? Ai[i + static_cast<int64_t>(l) * lda]
                                : Ai[l + static_cast<int64_t>(i) * lda];
          float y = transb == 0 ? Bi[l + static_cast<int64_t>(j) * ldb]
                                : Bi[j + static_cast<int64_t>(l) * ldb];
          if (fast) {
            x = tf32(x);
            y = tf32(y);
          }
          sum += x * y;
        }
        float& c = Ci[i + static_cast<int64_t>(j) * ldc];
        c = b == 0.f ? a * sum : a * sum + b * c;
      }
    }
  }
  return 0;
}

}  // extern "C"
