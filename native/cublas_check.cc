// Compiled only where cublas_v2.h is found at build time (see CMakeLists.txt): checks that every
// entry point and enum value of cublas_loader.h matches the real header. A mismatch fails the
// build; nothing here runs.
#include <cublas_v2.h>

#include <type_traits>

#include "cublas_loader.h"

namespace contranorm::blas {
namespace {

/** The types of the real header, to instantiate the signatures of cublas_loader.h with. */
struct Real {
  using Handle = cublasHandle_t;
  using Status = cublasStatus_t;
  using Operation = cublasOperation_t;
  using DataType = cudaDataType;
  using ComputeType = cublasComputeType_t;
  using GemmAlgo = cublasGemmAlgo_t;
  using Stream = cudaStream_t;
};

// Each entry point must exist under its symbol name with exactly our signature over the real
// types: initializing a pointer of that type picks the matching overload or fails to compile.
#define CN_CUBLAS_CHECK_SIGNATURE(name, Fn) \
  [[maybe_unused]] constexpr Fn<Real> kCheck_##name = &name;
CN_CUBLAS_ENTRY_POINTS(CN_CUBLAS_CHECK_SIGNATURE)
#undef CN_CUBLAS_CHECK_SIGNATURE

// The int stand-ins must have the size of the enums they replace.
static_assert(sizeof(Ours::Status) == sizeof(cublasStatus_t), "cublasStatus_t is not int-sized");
static_assert(sizeof(Ours::Operation) == sizeof(cublasOperation_t), "cublasOperation_t size");
static_assert(sizeof(Ours::DataType) == sizeof(cudaDataType), "cudaDataType size");
static_assert(sizeof(Ours::ComputeType) == sizeof(cublasComputeType_t), "cublasComputeType_t size");
static_assert(sizeof(Ours::GemmAlgo) == sizeof(cublasGemmAlgo_t), "cublasGemmAlgo_t size");
static_assert(sizeof(Ours::Stream) == sizeof(cudaStream_t), "cudaStream_t size");
static_assert(std::is_pointer_v<cublasHandle_t>, "cublasHandle_t is not a pointer");

// The values passed.
static_assert(kStatusSuccess == CUBLAS_STATUS_SUCCESS);
static_assert(kStatusNotInitialized == CUBLAS_STATUS_NOT_INITIALIZED);
static_assert(kStatusAllocFailed == CUBLAS_STATUS_ALLOC_FAILED);
static_assert(kStatusInvalidValue == CUBLAS_STATUS_INVALID_VALUE);
static_assert(kStatusArchMismatch == CUBLAS_STATUS_ARCH_MISMATCH);
static_assert(kStatusMappingError == CUBLAS_STATUS_MAPPING_ERROR);
static_assert(kStatusExecutionFailed == CUBLAS_STATUS_EXECUTION_FAILED);
static_assert(kStatusInternalError == CUBLAS_STATUS_INTERNAL_ERROR);
static_assert(kStatusNotSupported == CUBLAS_STATUS_NOT_SUPPORTED);
static_assert(kStatusLicenseError == CUBLAS_STATUS_LICENSE_ERROR);
static_assert(kOpN == CUBLAS_OP_N);
static_assert(kOpT == CUBLAS_OP_T);
static_assert(kR32F == CUDA_R_32F);
static_assert(kCompute32F == CUBLAS_COMPUTE_32F);
static_assert(kCompute32FFastTF32 == CUBLAS_COMPUTE_32F_FAST_TF32);
static_assert(kGemmDefault == CUBLAS_GEMM_DEFAULT);

}  // namespace
}  // namespace contranorm::blas
