// Device state: the probe, the caching allocator, execution contexts, and the status checks.
#include "device.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "cuda_check.h"

namespace contranorm {
namespace {

/** The file name without its folders, for messages. */
const char* baseName(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash != nullptr ? slash + 1 : path;
}

std::string versionText(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

std::string mib(size_t bytes) {
  return std::to_string((bytes + (1 << 19)) >> 20) + " MiB";
}

// Errors after which the CUDA context can no longer be used.
bool isSticky(cudaError_t status) {
  switch (status) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
    case cudaErrorHardwareStackError:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// caching allocator

/**
 * Sizes the pool hands out: multiples of 512 bytes up to 1 MiB, then four steps per power of two,
 * so a block is at most a quarter larger than asked and blocks of nearby sizes are shared.
 */
size_t roundSize(size_t bytes) {
  if (bytes <= (size_t{1} << 20))
    return (bytes + 511) & ~size_t{511};
  size_t top = size_t{1} << 20;
  while (top * 2 <= bytes)
    top *= 2;
  const size_t step = top / 4;
  return (bytes + step - 1) / step * step;
}

class Pool {
 public:
  /** A block of at least `bytes`; `*held` receives its real size. Frees the cache and retries
   * once before reporting that the device is out of memory. */
  void* alloc(size_t bytes, size_t* held) {
    const size_t rounded = roundSize(bytes);
    std::lock_guard<std::mutex> lock(mu_);

    // reuse
    auto it = cached_.lower_bound(rounded);
    if (it != cached_.end() && it->first <= rounded + rounded / 2) {
      void* ptr = it->second;
      *held = it->first;
      cached_.erase(it);
      addAllocated(*held);
      return ptr;
    }

    // allocate, and once more after freeing the cache
    void* ptr = tryMalloc(rounded);
    if (ptr == nullptr && !cached_.empty()) {
      freeCachedLocked();
      ptr = tryMalloc(rounded);
    }
    if (ptr == nullptr) {
      // for the message only: a failure here leaves the figures at 0
      size_t freeBytes = 0, totalBytes = 0;
      cudaMemGetInfo(&freeBytes, &totalBytes);
      cudaGetLastError();
      throw Error(ErrorCode::kOutOfMemory,
                  "out of device memory: cudaMalloc could not allocate " + std::to_string(bytes) +
                      " bytes (" + mib(bytes) + "); this module holds " +
                      mib(stats_.reservedBytes) + ", the device has " + mib(freeBytes) +
                      " free of " + mib(totalBytes),
                  bytes);
    }
    *held = rounded;
    addAllocated(rounded);
    return ptr;
  }

  void release(void* ptr, size_t held) {
    std::lock_guard<std::mutex> lock(mu_);
    cached_.emplace(held, ptr);
    stats_.allocatedBytes -= held;
  }

  void emptyCache() {
    std::lock_guard<std::mutex> lock(mu_);
    freeCachedLocked();
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void resetPeaks() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peakAllocatedBytes = stats_.allocatedBytes;
    stats_.peakReservedBytes = stats_.reservedBytes;
  }

 private:
  void addAllocated(size_t bytes) {
    stats_.allocatedBytes += bytes;
    stats_.peakAllocatedBytes = std::max(stats_.peakAllocatedBytes, stats_.allocatedBytes);
  }

  /** cudaMalloc, or null when the device is out of memory; other failures throw. */
  void* tryMalloc(size_t bytes) {
    void* ptr = nullptr;
    const cudaError_t status = cudaMalloc(&ptr, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return nullptr;
    }
    CN_CUDA_CHECK(status);
    stats_.mallocCalls++;
    stats_.reservedBytes += bytes;
    if (stats_.reservedBytes > stats_.peakReservedBytes) {
      stats_.peakReservedBytes = stats_.reservedBytes;
    }
    return ptr;
  }

  void freeCachedLocked() {
    // a block whose cudaFree fails is lost either way: the error is cleared, not reported
    for (const auto& [bytes, ptr] : cached_) {
      cudaFree(ptr);
      stats_.freeCalls++;
      stats_.reservedBytes -= bytes;
    }
    cached_.clear();
    cudaGetLastError();
  }

  std::mutex mu_;
  std::multimap<size_t, void*> cached_;
  MemoryStats stats_;
};

// The pool and the contexts live until the process ends and are never destroyed: freeing device
// memory from a static destructor would race the CUDA runtime's own teardown.
Pool& pool() {
  static Pool* instance = new Pool();
  return *instance;
}

// ---------------------------------------------------------------------------------------------
// execution contexts

class ContextPool {
 public:
  ExecContext* lease() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        ExecContext* ctx = idle_.back();
        idle_.pop_back();
        return ctx;
      }
    }
    auto* ctx = new ExecContext();
    try {
      CN_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
      const blas::Api& api = cublas();
      CN_CUBLAS_CHECK(api.cublasCreate_v2(&ctx->handle));
      CN_CUBLAS_CHECK(api.cublasSetStream_v2(ctx->handle, ctx->stream));
    } catch (...) {
      if (ctx->handle != nullptr)
        cublas().cublasDestroy_v2(ctx->handle);
      if (ctx->stream != nullptr)
        cudaStreamDestroy(ctx->stream);
      delete ctx;
      throw;
    }
    return ctx;
  }

  void giveBack(ExecContext* ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(ctx);
  }

 private:
  std::mutex mu_;
  std::vector<ExecContext*> idle_;
};

ContextPool& contexts() {
  static ContextPool* instance = new ContextPool();
  return *instance;
}

// ---------------------------------------------------------------------------------------------
// probe

ProbeResult runProbe() {
  ProbeResult r;
  cudaRuntimeGetVersion(&r.runtimeVersion);

  // driver: the static runtime opens libcuda.so.1 itself, but says only "insufficient driver"
  // when it is absent; opening it first tells the two cases apart
  dlerror();
  void* libcuda = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (libcuda == nullptr) {
    const char* why = dlerror();
    r.missing = "driver";
    r.reason = std::string("no CUDA driver: ") + (why != nullptr ? why : "libcuda.so.1 not found");
    return r;
  }
  cudaDriverGetVersion(&r.driverVersion);
  cudaGetLastError();
  if (r.driverVersion == 0) {
    r.missing = "driver";
    r.reason = "the CUDA driver (libcuda.so.1) opened but reported no version";
    return r;
  }
  if (r.driverVersion < r.runtimeVersion) {
    r.missing = "driver";
    r.reason = "the CUDA driver supports CUDA " + versionText(r.driverVersion) +
               ", older than the CUDA " + versionText(r.runtimeVersion) +
               " runtime this module is built with";
    return r;
  }

  // device
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  cudaGetLastError();
  if (status == cudaErrorNoDevice || (status == cudaSuccess && count == 0)) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    r.missing = "device";
    r.reason = "no CUDA device: the driver found none";
    if (visible != nullptr)
      r.reason += std::string(" (CUDA_VISIBLE_DEVICES=") + visible + ")";
    return r;
  }
  if (status != cudaSuccess) {
    r.missing = status == cudaErrorInsufficientDriver ? "driver" : "runtime";
    r.reason = std::string("CUDA could not start: ") + cudaGetErrorName(status) + ": " +
               cudaGetErrorString(status);
    return r;
  }
  cudaDeviceProp prop{};
  const cudaError_t propStatus = cudaGetDeviceProperties(&prop, 0);
  if (propStatus != cudaSuccess) {
    cudaGetLastError();
    r.missing = "runtime";
    r.reason = std::string("CUDA could not read device 0: ") + cudaGetErrorName(propStatus);
    return r;
  }
  r.device = prop.name;
  r.ccMajor = prop.major;
  r.ccMinor = prop.minor;
  r.memory = prop.totalGlobalMem;
  if (prop.major * 10 + prop.minor < 75) {
    r.missing = "device";
    r.reason = "device 0 (" + r.device + ") has compute capability " + std::to_string(prop.major) +
               "." + std::to_string(prop.minor) + "; this module needs 7.5 or newer";
    return r;
  }

  // cuBLAS
  std::string why;
  const blas::Library* lib = blas::loadCublas(&why);
  if (lib == nullptr) {
    r.missing = "cublas";
    r.reason = why;
    return r;
  }
  r.cublasPath = lib->path;
  return r;
}

const ProbeResult& probeOnce() {
  static std::once_flag once;
  static ProbeResult* result = nullptr;
  std::call_once(once, [] {
    result = new ProbeResult(runProbe());
    if (!result->missing.empty())
      return;

    // a first context: a stream and a cuBLAS handle, proving both start on this device
    try {
      CN_CUDA_CHECK(cudaSetDevice(0));
      contexts().giveBack(contexts().lease());
      result->ok = true;
    } catch (const Error& e) {
      result->missing = "cublas";
      result->reason = std::string("cuBLAS could not start: ") + e.what();
    }
  });
  return *result;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// checks

void throwCuda(cudaError_t status, const char* call, const char* file, int line) {
  std::string message = std::string(call) + " failed: " + cudaGetErrorName(status) + ": " +
                        cudaGetErrorString(status) + " (" + baseName(file) + ":" +
                        std::to_string(line) + ")";
  if (isSticky(status)) {
    message += "; the CUDA context of this process cannot be used again, restart the process";
  }
  cudaGetLastError();
  const ErrorCode code =
      status == cudaErrorMemoryAllocation ? ErrorCode::kOutOfMemory : ErrorCode::kCuda;
  throw Error(code, message);
}

void throwCublas(int status, const char* call, const char* file, int line) {
  const std::string message = std::string(call) + " failed: " + blas::statusName(status) + " (" +
                              baseName(file) + ":" + std::to_string(line) + ")";
  const ErrorCode code =
      status == blas::kStatusAllocFailed ? ErrorCode::kOutOfMemory : ErrorCode::kCublas;
  throw Error(code, message);
}

// ---------------------------------------------------------------------------------------------
// public

const ProbeResult& probe() {
  return probeOnce();
}

const blas::Api& cublas() {
  return blas::loadCublas(nullptr)->api;
}

void requireCuda() {
  const ProbeResult& p = probeOnce();
  if (!p.ok)
    throw Error(ErrorCode::kUnavailable, "CUDA cannot run: " + p.reason);
  CN_CUDA_CHECK(cudaSetDevice(0));
}

Block::Block(size_t bytes) : bytes_(bytes) {
  if (bytes > 0)
    ptr_ = pool().alloc(bytes, &rounded_);
}

Block::~Block() {
  release();
}

Block::Block(Block&& other) noexcept
    : ptr_(other.ptr_), bytes_(other.bytes_), rounded_(other.rounded_) {
  other.ptr_ = nullptr;
  other.bytes_ = other.rounded_ = 0;
}

Block& Block::operator=(Block&& other) noexcept {
  if (this != &other) {
    release();
    ptr_ = other.ptr_;
    bytes_ = other.bytes_;
    rounded_ = other.rounded_;
    other.ptr_ = nullptr;
    other.bytes_ = other.rounded_ = 0;
  }
  return *this;
}

void Block::release() {
  if (ptr_ != nullptr)
    pool().release(ptr_, rounded_);
  ptr_ = nullptr;
  bytes_ = rounded_ = 0;
}

CallScope::CallScope() {
  requireCuda();
  ctx_ = contexts().lease();
}

CallScope::~CallScope() {
  // wait for every kernel that may still read the scratch, whatever happened, then free it; a
  // failure here was already reported by synchronize(), or the call is unwinding from another
  cudaStreamSynchronize(ctx_->stream);
  cudaGetLastError();
  scratch_.clear();
  contexts().giveBack(ctx_);
}

void* CallScope::scratch(size_t bytes) {
  scratch_.emplace_back(bytes);
  return scratch_.back().data();
}

void CallScope::synchronize() {
  CN_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));
}

DeviceArrayPtr makeDeviceArray(size_t length) {
  requireCuda();
  return std::make_shared<DeviceArray>(length);
}

size_t deviceArrayLength(const DeviceArray& array) {
  return array.length();
}

void uploadDeviceArray(DeviceArray& array, const float* src, size_t length) {
  if (length == 0)
    return;
  CallScope scope;
  CN_CUDA_CHECK(cudaMemcpyAsync(array.data(), src, length * sizeof(float), cudaMemcpyHostToDevice,
                                scope.stream()));
  scope.synchronize();
}

void downloadDeviceArray(const DeviceArray& array, float* dst, size_t length) {
  if (length == 0)
    return;
  CallScope scope;
  CN_CUDA_CHECK(cudaMemcpyAsync(dst, array.data(), length * sizeof(float), cudaMemcpyDeviceToHost,
                                scope.stream()));
  scope.synchronize();
}

MemoryStats memoryStats() {
  return pool().stats();
}

void emptyCache() {
  pool().emptyCache();
}

void bench::resetPeakMemory() {
  pool().resetPeaks();
}

}  // namespace contranorm
