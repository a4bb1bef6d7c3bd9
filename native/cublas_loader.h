// cuBLAS, opened at run time. The module declares only the entry points it calls, so it builds
// without the cuBLAS headers and loads without the library; where cublas_v2.h is present at build
// time, cublas_check.cc compares every declaration here with it.
//
// The entry points are listed once, in CN_CUBLAS_ENTRY_POINTS, with their signature written over a
// set of types: `Ours` here (plain ints and opaque pointers, ABI-identical to the real types), the
// types of cublas_v2.h in the check.
#pragma once

#include <string>

namespace contranorm::blas {

/** The opaque cuBLAS context behind a handle (`struct cublasContext`). */
struct Context;

/** The types of the declarations below; enums travel as int, which is their ABI on every target. */
struct Ours {
  using Handle = Context*;  // cublasHandle_t
  using Status = int;       // cublasStatus_t
  using Operation = int;    // cublasOperation_t
  using DataType = int;     // cudaDataType
  using ComputeType = int;  // cublasComputeType_t
  using GemmAlgo = int;     // cublasGemmAlgo_t
  using Stream = void*;     // cudaStream_t
};

template <class T>
using CreateFn = typename T::Status (*)(typename T::Handle*);

template <class T>
using DestroyFn = typename T::Status (*)(typename T::Handle);

template <class T>
using SetStreamFn = typename T::Status (*)(typename T::Handle, typename T::Stream);

template <class T>
using GemmStridedBatchedExFn = typename T::Status (*)(
    typename T::Handle, typename T::Operation, typename T::Operation, int, int, int, const void*,
    const void*, typename T::DataType, int, long long, const void*, typename T::DataType, int,
    long long, const void*, void*, typename T::DataType, int, long long, int,
    typename T::ComputeType, typename T::GemmAlgo);

// Symbol name and signature of every entry point the module calls.
#define CN_CUBLAS_ENTRY_POINTS(X)    \
  X(cublasCreate_v2, CreateFn)       \
  X(cublasDestroy_v2, DestroyFn)     \
  X(cublasSetStream_v2, SetStreamFn) \
  X(cublasGemmStridedBatchedEx, GemmStridedBatchedExFn)

// Enum values the module passes, as cublas_api.h and library_types.h define them.
constexpr int kStatusSuccess = 0;           // CUBLAS_STATUS_SUCCESS
constexpr int kStatusNotInitialized = 1;    // CUBLAS_STATUS_NOT_INITIALIZED
constexpr int kStatusAllocFailed = 3;       // CUBLAS_STATUS_ALLOC_FAILED
constexpr int kStatusInvalidValue = 7;      // CUBLAS_STATUS_INVALID_VALUE
constexpr int kStatusArchMismatch = 8;      // CUBLAS_STATUS_ARCH_MISMATCH
constexpr int kStatusMappingError = 11;     // CUBLAS_STATUS_MAPPING_ERROR
constexpr int kStatusExecutionFailed = 13;  // CUBLAS_STATUS_EXECUTION_FAILED
constexpr int kStatusInternalError = 14;    // CUBLAS_STATUS_INTERNAL_ERROR
constexpr int kStatusNotSupported = 15;     // CUBLAS_STATUS_NOT_SUPPORTED
constexpr int kStatusLicenseError = 16;     // CUBLAS_STATUS_LICENSE_ERROR
constexpr int kOpN = 0;                     // CUBLAS_OP_N
constexpr int kOpT = 1;                     // CUBLAS_OP_T
constexpr int kR32F = 0;                    // CUDA_R_32F
constexpr int kCompute32F = 68;             // CUBLAS_COMPUTE_32F
constexpr int kCompute32FFastTF32 = 77;     // CUBLAS_COMPUTE_32F_FAST_TF32
constexpr int kGemmDefault = -1;            // CUBLAS_GEMM_DEFAULT

/** The entry points, resolved from the opened library. */
struct Api {
#define CN_CUBLAS_FIELD(name, Fn) Fn<Ours> name = nullptr;
  CN_CUBLAS_ENTRY_POINTS(CN_CUBLAS_FIELD)
#undef CN_CUBLAS_FIELD
};

/** The opened library: its path on disk and its entry points. */
struct Library {
  std::string path;
  Api api;
};

/**
 * Opens libcublas.so.13, else libcublas.so.12, once per process, and resolves every entry point.
 * Returns null when none opens or one lacks an entry point, with the reason in `*reason`.
 */
const Library* loadCublas(std::string* reason);

/** The name of a cublasStatus_t value, such as `CUBLAS_STATUS_ALLOC_FAILED`. */
const char* statusName(int status);

}  // namespace contranorm::blas
