// Status checks for CUDA and cuBLAS calls. Each macro records the call, file and line and throws a
// contranorm::Error; CN_LAUNCH_CHECK follows every kernel launch.
#pragma once

#include <cuda_runtime.h>

#include "errors.h"

namespace contranorm {

/** Throws the error for a failed CUDA runtime call (out of memory gets its own code). */
[[noreturn]] void throwCuda(cudaError_t status, const char* call, const char* file, int line);

/** Throws the error for a failed cuBLAS call. */
[[noreturn]] void throwCublas(int status, const char* call, const char* file, int line);

}  // namespace contranorm

#define CN_CUDA_CHECK(call)                                           \
  do {                                                                \
    const cudaError_t cn_status_ = (call);                            \
    if (cn_status_ != cudaSuccess) {                                  \
      ::contranorm::throwCuda(cn_status_, #call, __FILE__, __LINE__); \
    }                                                                 \
  } while (0)

#define CN_CUBLAS_CHECK(call)                                           \
  do {                                                                  \
    const int cn_status_ = (call);                                      \
    if (cn_status_ != ::contranorm::blas::kStatusSuccess) {             \
      ::contranorm::throwCublas(cn_status_, #call, __FILE__, __LINE__); \
    }                                                                   \
  } while (0)

// After a launch: the launch itself (bad configuration, no kernel image for the device).
#define CN_LAUNCH_CHECK(kernel)                                                     \
  do {                                                                              \
    const cudaError_t cn_status_ = cudaGetLastError();                              \
    if (cn_status_ != cudaSuccess) {                                                \
      ::contranorm::throwCuda(cn_status_, "launch of " kernel, __FILE__, __LINE__); \
    }                                                                               \
  } while (0)
