// What the GPU benchmark (bench/gpu/bench.ts) measures with: CUDA events around calls and their
// cuBLAS products (see timing.h), the device's L2 size, and the two ceilings of every row, a large
// cuBLAS product and a large device-to-device copy, timed on a stream of the module's own.
#include "timing.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "cuda_check.h"
#include "device.h"

namespace contranorm {
namespace timing {

/** A timed call's events: start and end, and a pair per cuBLAS product at level 2. */
struct CallRecord {
  bench::Op op = bench::Op::kForward;
  cudaEvent_t start = nullptr;
  cudaEvent_t end = nullptr;
  std::vector<std::pair<cudaEvent_t, cudaEvent_t>> products;
};

namespace {

std::atomic<int> level{0};

// the call being timed on this thread with its products, at level 2
thread_local CallRecord* current = nullptr;

/** Events are made once and reused: cudaEventCreate costs more than a short call. */
class EventPool {
 public:
  cudaEvent_t get() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        cudaEvent_t event = idle_.back();
        idle_.pop_back();
        return event;
      }
    }
    cudaEvent_t event = nullptr;
    CN_CUDA_CHECK(cudaEventCreate(&event));
    return event;
  }

  void giveBack(cudaEvent_t event) {
    if (event == nullptr)
      return;
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(event);
  }

 private:
  std::mutex mu_;
  std::vector<cudaEvent_t> idle_;
};

// never destroyed, as the allocator's pool: see device.cc
EventPool& events() {
  static EventPool* instance = new EventPool();
  return *instance;
}

/** Finished records, waiting for bench::takeTimes(). */
std::mutex doneMutex;
std::vector<CallRecord*>& done() {
  static auto* instance = new std::vector<CallRecord*>();
  return *instance;
}

void discard(CallRecord* record) {
  events().giveBack(record->start);
  events().giveBack(record->end);
  for (const auto& [begin, end] : record->products) {
    events().giveBack(begin);
    events().giveBack(end);
  }
  delete record;
}

/** Milliseconds from `a` to `b`; both must have completed. */
double elapsedMs(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  CN_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

/** Times `reps` runs of `body` on the scope's stream, after one untimed run. */
template <class Body>
std::vector<double> timeRuns(CallScope& scope, int reps, Body&& body) {
  body();
  std::vector<cudaEvent_t> marks(static_cast<size_t>(reps) + 1, nullptr);
  std::vector<double> ms;
  try {
    for (auto& e : marks)
      e = events().get();
    CN_CUDA_CHECK(cudaEventRecord(marks[0], scope.stream()));
    for (int r = 0; r < reps; ++r) {
      body();
      CN_CUDA_CHECK(cudaEventRecord(marks[r + 1], scope.stream()));
    }
    scope.synchronize();
    for (int r = 0; r < reps; ++r)
      ms.push_back(elapsedMs(marks[r], marks[r + 1]));
  } catch (...) {
    for (cudaEvent_t e : marks)
      events().giveBack(e);
    throw;
  }
  for (cudaEvent_t e : marks)
    events().giveBack(e);
  return ms;
}

/** Fills `count` floats of device memory with values in [-1, 1) through a small host tile. */
void fillDevice(CallScope& scope, float* dst, size_t count, uint32_t seed) {
  std::vector<float> tile(std::min<size_t>(count, size_t{1} << 20));
  for (float& v : tile) {
    seed = seed * 1664525u + 1013904223u;
    v = static_cast<float>(seed) / 2147483648.f - 1.f;
  }
  for (size_t first = 0; first < count; first += tile.size()) {
    const size_t n = std::min(tile.size(), count - first);
    CN_CUDA_CHECK(cudaMemcpyAsync(dst + first, tile.data(), n * sizeof(float),
                                  cudaMemcpyHostToDevice, scope.stream()));
  }
  scope.synchronize();
}

}  // namespace

CallTimer::CallTimer(cudaStream_t stream, bench::Op op) : stream_(stream) {
  const int l = level.load(std::memory_order_relaxed);
  if (l < 1)
    return;
  record_ = new CallRecord();
  record_->op = op;
  record_->start = events().get();
  CN_CUDA_CHECK(cudaEventRecord(record_->start, stream_));
  if (l >= 2)
    current = record_;
}

CallTimer::~CallTimer() {
  if (record_ == nullptr)
    return;
  if (current == record_)
    current = nullptr;
  discard(record_);
}

void CallTimer::finish() {
  if (record_ == nullptr)
    return;
  if (current == record_)
    current = nullptr;
  record_->end = events().get();
  CN_CUDA_CHECK(cudaEventRecord(record_->end, stream_));
  CN_CUDA_CHECK(cudaEventSynchronize(record_->end));
  std::lock_guard<std::mutex> lock(doneMutex);
  done().push_back(record_);
  record_ = nullptr;
}

void productBegin(cudaStream_t stream) {
  CallRecord* record = current;
  if (record == nullptr)
    return;
  record->products.emplace_back(events().get(), nullptr);
  CN_CUDA_CHECK(cudaEventRecord(record->products.back().first, stream));
}

void productEnd(cudaStream_t stream) {
  CallRecord* record = current;
  if (record == nullptr || record->products.empty() || record->products.back().second != nullptr)
    return;
  record->products.back().second = events().get();
  CN_CUDA_CHECK(cudaEventRecord(record->products.back().second, stream));
}

}  // namespace timing

// ---------------------------------------------------------------------------------------------
// the plain-C++ side (contranorm.h)

void bench::setTiming(int level) {
  if (level < 0 || level > 2) {
    throw Error(ErrorCode::kArgValue,
                "level: expected 0, 1 or 2, received " + std::to_string(level));
  }
  if (level > 0)
    requireCuda();
  timing::level.store(level, std::memory_order_relaxed);
}

std::vector<bench::CallTime> bench::takeTimes() {
  std::vector<timing::CallRecord*> taken;
  {
    std::lock_guard<std::mutex> lock(timing::doneMutex);
    taken.swap(timing::done());
  }

  // times, relative to the start of the first record; every record is freed, whatever happens
  std::vector<CallTime> out;
  try {
    for (const timing::CallRecord* r : taken) {
      CallTime t;
      t.op = r->op;
      t.startMs = timing::elapsedMs(taken.front()->start, r->start);
      t.endMs = timing::elapsedMs(taken.front()->start, r->end);
      for (const auto& [begin, end] : r->products) {
        if (end == nullptr)
          continue;
        t.productMs += timing::elapsedMs(begin, end);
        t.products++;
      }
      out.push_back(t);
    }
  } catch (...) {
    for (timing::CallRecord* r : taken)
      timing::discard(r);
    throw;
  }
  for (timing::CallRecord* r : taken)
    timing::discard(r);
  return out;
}

bench::DeviceFacts bench::deviceFacts() {
  requireCuda();
  cudaDeviceProp prop{};
  CN_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  DeviceFacts f;
  f.l2Bytes = static_cast<size_t>(std::max(prop.l2CacheSize, 0));
  f.smCount = prop.multiProcessorCount;
  CN_CUDA_CHECK(cudaMemGetInfo(&f.freeBytes, &f.totalBytes));
  return f;
}

std::vector<double> bench::timeGemm(int64_t n, bool tf32, int reps) {
  if (n < 1 || n > 65536 || reps < 1) {
    throw Error(ErrorCode::kArgValue, "timeGemm: expected n in [1, 65536] and reps >= 1");
  }
  CallScope scope;
  const size_t count = static_cast<size_t>(n * n);
  float* a = scope.scratch<float>(count);
  float* b = scope.scratch<float>(count);
  float* c = scope.scratch<float>(count);
  timing::fillDevice(scope, a, count, 1);
  timing::fillDevice(scope, b, count, 2);
  const blas::Api& api = cublas();
  const int ni = static_cast<int>(n);
  const float alpha = 1.f, beta = 0.f;
  const int compute = tf32 ? blas::kCompute32FFastTF32 : blas::kCompute32F;
  return timing::timeRuns(scope, reps, [&] {
    CN_CUBLAS_CHECK(api.cublasGemmStridedBatchedEx(
        scope.handle(), blas::kOpN, blas::kOpN, ni, ni, ni, &alpha, b, blas::kR32F, ni, 0, a,
        blas::kR32F, ni, 0, &beta, c, blas::kR32F, ni, 0, 1, compute, blas::kGemmDefault));
  });
}

std::vector<double> bench::timeCopy(size_t bytes, int reps) {
  if (bytes < 1 || reps < 1) {
    throw Error(ErrorCode::kArgValue, "timeCopy: expected bytes >= 1 and reps >= 1");
  }
  CallScope scope;
  void* src = scope.scratch(bytes);
  void* dst = scope.scratch(bytes);
  return timing::timeRuns(scope, reps, [&] {
    CN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, scope.stream()));
  });
}

}  // namespace contranorm
