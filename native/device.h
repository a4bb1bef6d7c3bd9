// Device state shared by every call: the probe of what can run, the caching allocator, and the
// execution contexts (a stream and a cuBLAS handle each) that calls lease. One device, device 0
// of what CUDA_VISIBLE_DEVICES shows; the state lives for the life of the process.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "contranorm.h"
#include "cublas_loader.h"

namespace contranorm {

/** cuBLAS entry points; only valid after requireCuda(). */
const blas::Api& cublas();

/** Throws kUnavailable, naming what is missing, unless CUDA can run; selects the device. */
void requireCuda();

/**
 * Device memory from the caching pool, returned to it on destruction. A block freed while work on
 * some stream may still read it would be unsafe: every call synchronizes its stream before its
 * blocks go back (see CallScope).
 */
class Block {
 public:
  Block() = default;
  explicit Block(size_t bytes);
  ~Block();
  Block(Block&& other) noexcept;
  Block& operator=(Block&& other) noexcept;
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void release();

  void* ptr_ = nullptr;
  size_t bytes_ = 0;    // as asked for
  size_t rounded_ = 0;  // as held in the pool
};

/** A float array in device memory: what a DeviceBuffer holds. */
class DeviceArray {
 public:
  explicit DeviceArray(size_t length) : length_(length), block_(length * sizeof(float)) {}
  size_t length() const { return length_; }
  float* data() const { return block_.as<float>(); }

 private:
  size_t length_;
  Block block_;
};

/** A stream and a cuBLAS handle bound to it. */
struct ExecContext {
  cudaStream_t stream = nullptr;
  blas::Ours::Handle handle = nullptr;
};

/**
 * One call's hold on the device: an execution context leased from the pool (so concurrent calls
 * from worker threads never share a stream or a handle) and the call's scratch blocks. On
 * destruction it waits for the stream, then frees the scratch and returns the context, so no
 * block goes back to the pool while a kernel may still use it, even when the call threw.
 */
class CallScope {
 public:
  CallScope();
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

  cudaStream_t stream() const { return ctx_->stream; }
  blas::Ours::Handle handle() const { return ctx_->handle; }

  /** Scratch memory that lives until the end of the call. */
  void* scratch(size_t bytes);
  template <class T>
  T* scratch(size_t count) {
    return static_cast<T*>(scratch(count * sizeof(T)));
  }

  /** Waits for the stream and throws if any of its work failed. */
  void synchronize();

 private:
  std::vector<Block> scratch_;
  ExecContext* ctx_ = nullptr;
};

}  // namespace contranorm
