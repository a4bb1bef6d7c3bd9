// The native ContraNorm as plain C++: what the Node-API glue calls. No CUDA type appears here, so
// the glue compiles without CUDA headers. Shapes are row-major [B, N, D]: B items, N rows (tokens
// or nodes) each, D channels; M is the side of S (N in tokens mode, D in features mode).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"

namespace contranorm {

/** What can run, probed once per process. */
struct ProbeResult {
  bool ok = false;
  /** Why CUDA cannot run, when it cannot. */
  std::string reason;
  /** What is missing: "module", "driver", "device", "cublas" or "runtime"; empty when ok. */
  std::string missing;
  std::string device;
  int ccMajor = 0;
  int ccMinor = 0;
  size_t memory = 0;
  std::string cublasPath;
  /** Versions as CUDA encodes them (1000 * major + 10 * minor); 0 when unknown. */
  int driverVersion = 0;
  int runtimeVersion = 0;
};

/** Probes the driver, the device and cuBLAS on first use; the result is kept. */
const ProbeResult& probe();

/** A float array in device memory (defined in device.h). */
class DeviceArray;
using DeviceArrayPtr = std::shared_ptr<DeviceArray>;

/** A new device array of `length` floats, uninitialized. Throws unless CUDA can run. */
DeviceArrayPtr makeDeviceArray(size_t length);
size_t deviceArrayLength(const DeviceArray& array);
/** Copies `length` floats from host memory to the start of `array`. */
void uploadDeviceArray(DeviceArray& array, const float* src, size_t length);
/** Copies `length` floats from the start of `array` to host memory. */
void downloadDeviceArray(const DeviceArray& array, float* dst, size_t length);

/** A forward call's options, resolved and validated (the TypeScript `Plan`). */
struct ForwardDesc {
  int64_t B = 0, N = 0, D = 0;
  bool features = false;
  /** `s`, length 1 or D. */
  std::vector<float> scale;
  bool scaleExp = false;
  double temperature = 1;
  bool identity = false;
  bool dualNorm = false;
  bool preNorm = false;
  /** Valid rows per item, length B, or empty when every row is valid. */
  std::vector<int32_t> lengths;
  /** Excluded entries of S (non-zero = excluded), read in place; null when none. */
  const uint8_t* mask = nullptr;
  bool maskBatched = false;
  bool layerNorm = true;
  /** LayerNorm gain and shift, length D, or empty when absent. */
  std::vector<float> weight;
  std::vector<float> bias;
  double lnEps = 1e-6;
  double eps = 1e-12;
  bool tf32 = false;
  bool save = true;
};

/** An input: host memory read in place, or a device array. */
struct Input {
  const float* host = nullptr;
  DeviceArrayPtr device;
};

/** An output: host memory written in place, or a device array. */
struct Output {
  float* host = nullptr;
  DeviceArrayPtr device;
};

/** What a forward call keeps on the device for its backward (defined in ops.cc). */
class Saved;
using SavedPtr = std::shared_ptr<Saved>;

/** Device bytes a saved context holds. */
size_t savedBytes(const Saved& saved);

/** The forward: writes y; returns the saved context, or null when `desc.save` is false. */
SavedPtr forward(const ForwardDesc& desc, const Input& x, const Output& y);

/** Parameter gradients of a backward call; dWeight and dBias are empty when absent. */
struct Grads {
  std::vector<float> dScale;
  std::vector<float> dWeight;
  std::vector<float> dBias;
};

/** The backward of a forward call: writes dx and returns the parameter gradients. */
Grads backward(const Saved& saved, const Input& dy, const Output& dx);

/** The shape [B, N, D] a saved context was made for. */
void savedShape(const Saved& saved, int64_t* B, int64_t* N, int64_t* D);

/** Counters of the caching allocator. */
struct MemoryStats {
  /** Bytes held from the device (cudaMalloc), in use or cached. */
  size_t reservedBytes = 0;
  /** Bytes handed out and not yet returned. */
  size_t allocatedBytes = 0;
  /** The most `reservedBytes` was, since the start or bench::resetPeakMemory(). */
  size_t peakReservedBytes = 0;
  /** The most `allocatedBytes` was, since the start or bench::resetPeakMemory(). */
  size_t peakAllocatedBytes = 0;
  /** cudaMalloc and cudaFree calls so far. */
  size_t mallocCalls = 0;
  size_t freeCalls = 0;
};

MemoryStats memoryStats();

/** Returns every cached, unused block to the device. */
void emptyCache();

/**
 * Internal: what the GPU benchmark (bench/gpu/bench.ts) measures with. Not part of the package's
 * API; nothing else calls it. Timing is process-wide: one benchmark drives it at a time.
 */
namespace bench {

/** Which operation a timed call was. */
enum class Op { kForward, kBackward };

/** One timed call, in milliseconds from the start of the first call of the same take. */
struct CallTime {
  Op op = Op::kForward;
  double startMs = 0;
  double endMs = 0;
  /** Time inside the call's cuBLAS products (level 2), and how many there were. */
  double productMs = 0;
  int products = 0;
};

/** What calls record from now on: 0 nothing, 1 each call, 2 each call and each product. */
void setTiming(int level);

/** The calls recorded since the last take, in the order they finished; clears them. */
std::vector<CallTime> takeTimes();

/** What the benchmark needs to know of device 0. */
struct DeviceFacts {
  size_t l2Bytes = 0;
  int smCount = 0;
  size_t freeBytes = 0;
  size_t totalBytes = 0;
};

DeviceFacts deviceFacts();

/**
 * Milliseconds of each of `reps` row-major n x n x n single-precision products through cuBLAS
 * (tf32: tensor cores allowed), after one untimed product; CUDA events on a leased stream.
 */
std::vector<double> timeGemm(int64_t n, bool tf32, int reps);

/** Milliseconds of each of `reps` device-to-device copies of `bytes`, after one untimed copy. */
std::vector<double> timeCopy(size_t bytes, int reps);

/** Starts the peaks of MemoryStats again from the current figures. */
void resetPeakMemory();

}  // namespace bench

}  // namespace contranorm
