// Stage timing for the benchmark (bench/gpu/bench.ts): CUDA events around each forward and
// backward call on its own stream and, at level 2, around each cuBLAS product inside it. Off by
// default (level 0), where a call pays one atomic load. The plain-C++ side that the Node-API glue
// calls (bench::setTiming, bench::takeTimes, ...) is declared in contranorm.h.
#pragma once

#include <cuda_runtime.h>

#include "contranorm.h"

namespace contranorm::timing {

/** The events of one timed call (defined in timing.cc). */
struct CallRecord;

/**
 * Times one forward or backward call on `stream` when the timing level is 1 or more: the start
 * event is recorded at construction, the end event by finish(), which waits for it and keeps the
 * record for bench::takeTimes(). A call that throws before finish() keeps no record.
 */
class CallTimer {
 public:
  CallTimer(cudaStream_t stream, bench::Op op);
  ~CallTimer();
  CallTimer(const CallTimer&) = delete;
  CallTimer& operator=(const CallTimer&) = delete;

  /** Records the end event after the call's last operation, waits for it, keeps the record. */
  void finish();

 private:
  CallRecord* record_ = nullptr;
  cudaStream_t stream_;
};

/**
 * Brackets one cuBLAS product (all the strided-batched calls of one `gemm`) of the call being
 * timed on this thread, at level 2; does nothing otherwise.
 */
void productBegin(cudaStream_t stream);
void productEnd(cudaStream_t stream);

}  // namespace contranorm::timing
