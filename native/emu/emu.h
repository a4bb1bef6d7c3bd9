// The device side of the CPU stand-in (see cuda_runtime.h): kernel qualifiers, thread indices,
// __syncthreads, warp shuffles and launches. Each thread of a block is a fiber; a barrier (block
// or warp) switches to the scheduler, which resumes the waiting fibers once every live thread of
// the block (or warp) has arrived, and reports a deadlock (a barrier some threads never reach).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

using std::max;
using std::min;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static thread_local

namespace emu {

struct Index {
  unsigned x, y, z;
};

/** The launch running on this OS thread: its shape and the fiber running now. */
struct State {
  Index grid, block, blockIndex;
  Index threadIndex;  // of the fiber running now
};

State& state();
void barrier(bool block);
void* shuffleSlot(int lane, int round);
int nextShuffleRound();
void* dynamicShared();
void launchBody(dim3 grid, dim3 block, size_t shared, const std::function<void()>& body);
void setLastError(cudaError_t status);

template <class T>
T shflXor(unsigned, T value, int offset) {
  static_assert(sizeof(T) <= 8, "shuffles of at most 8 bytes");
  const Index t = state().threadIndex;
  const Index b = state().block;
  const int linear = static_cast<int>(t.x + b.x * (t.y + b.y * t.z));
  const int lane = linear & 31;
  const int round = nextShuffleRound();
  std::memcpy(shuffleSlot(lane, round), &value, sizeof(T));
  barrier(false);
  T out;
  std::memcpy(&out, shuffleSlot(lane ^ offset, round), sizeof(T));
  return out;
}

template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shared, cudaStream_t, A... args) {
  launchBody(grid, block, shared, [=] { kernel(args...); });
}

template <class T>
T* dynamicSharedAs() {
  return static_cast<T*>(dynamicShared());
}

}  // namespace emu

#define threadIdx (::emu::state().threadIndex)
#define blockIdx (::emu::state().blockIndex)
#define blockDim (::emu::state().block)
#define gridDim (::emu::state().grid)
#define __syncthreads() ::emu::barrier(true)
#define __shfl_xor_sync(mask, value, offset) ::emu::shflXor(mask, value, offset)
