// The CPU stand-in for the CUDA runtime (see cuda_runtime.h and emu.h): memory, streams, device
// properties, and the fiber scheduler that runs kernels. Memory from cudaMalloc is filled with
// 0xff bytes (NaN as floats), so that a kernel reading what nothing wrote shows up as NaN.
#include <ucontext.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_runtime.h"

namespace {

std::mutex memoryMutex;
std::map<void*, size_t> allocations;
size_t allocatedBytes = 0;

size_t deviceMemory() {
  const char* env = std::getenv("EMU_DEVICE_MEMORY");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : (size_t{8} << 30);
}

thread_local cudaError_t lastError = cudaSuccess;

}  // namespace

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  std::lock_guard<std::mutex> lock(memoryMutex);
  if (allocatedBytes + bytes > deviceMemory())
    return lastError = cudaErrorMemoryAllocation;
  void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (p == nullptr)
    return lastError = cudaErrorMemoryAllocation;
  std::memset(p, 0xff, bytes);
  allocations[p] = bytes;
  allocatedBytes += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  std::lock_guard<std::mutex> lock(memoryMutex);
  auto it = allocations.find(ptr);
  if (it == allocations.end())
    return lastError = cudaErrorInvalidValue;
  allocatedBytes -= it->second;
  allocations.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  std::lock_guard<std::mutex> lock(memoryMutex);
  *totalBytes = deviceMemory();
  *freeBytes = *totalBytes - allocatedBytes;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = lastError;
  lastError = cudaSuccess;
  return e;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  *stream = reinterpret_cast<cudaStream_t>(new char);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : (lastError = cudaErrorInvalidValue);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
  if (bytes > 0)
    std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0)
    return lastError = cudaErrorInvalidValue;
  std::snprintf(prop->name, sizeof prop->name, "CPU emulator");
  prop->totalGlobalMem = deviceMemory();
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->l2CacheSize = 256 << 10;  // small, so that the benchmark's rotating inputs stay few
  return cudaSuccess;
}

// Events: work runs when it is issued, so an event is the host clock when it is recorded.
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  bool recorded = false;
};

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  if (event == nullptr)
    return lastError = cudaErrorInvalidValue;
  event->at = std::chrono::steady_clock::now();
  event->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event == nullptr ? (lastError = cudaErrorInvalidValue) : cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (start == nullptr || end == nullptr || !start->recorded || !end->recorded)
    return lastError = cudaErrorInvalidValue;
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t status) {
  switch (status) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    default:
      return "cudaErrorOther";
  }
}

const char* cudaGetErrorString(cudaError_t status) {
  return cudaGetErrorName(status);
}

namespace emu {
namespace {

constexpr size_t kStack = 256 * 1024;

struct Fiber {
  ucontext_t ctx;
  Index tid;
  int warp = 0;
  int wait = 0;  // 0 ready, 1 at a warp barrier, 2 at a block barrier
  bool done = false;
  int rounds = 0;
};

struct Launch {
  State st{};
  ucontext_t sched;
  std::vector<Fiber> fibers;
  Fiber* cur = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<uint64_t> slots;  // [warp][round parity][lane]
  std::vector<char> shared;
};

thread_local Launch* current = nullptr;
thread_local std::vector<char> stacks;

void fiberMain() {
  Launch* L = current;
  (*L->body)();
  L->cur->done = true;
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "emu: %s\n", what.c_str());
  std::abort();
}

}  // namespace

State& state() {
  return current->st;
}

void barrier(bool block) {
  Launch* L = current;
  Fiber* f = L->cur;
  f->wait = block ? 2 : 1;
  swapcontext(&f->ctx, &L->sched);
}

void* shuffleSlot(int lane, int round) {
  Launch* L = current;
  return &L->slots[(static_cast<size_t>(L->cur->warp) * 2 + (round & 1)) * 32 + lane];
}

int nextShuffleRound() {
  return current->cur->rounds++;
}

void* dynamicShared() {
  return current->shared.data();
}

void setLastError(cudaError_t status) {
  lastError = status;
}

void launchBody(dim3 grid, dim3 block, size_t shared, const std::function<void()>& body) {
  const size_t threads = size_t{block.x} * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || shared > 48 * 1024 || grid.x == 0 ||
      grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    lastError = cudaErrorInvalidConfiguration;
    return;
  }
  if (current != nullptr)
    fail("a launch inside a kernel");
  Launch L;
  current = &L;
  L.st.grid = {grid.x, grid.y, grid.z};
  L.st.block = {block.x, block.y, block.z};
  L.body = &body;
  const size_t warps = (threads + 31) / 32;
  L.slots.assign(warps * 2 * 32, 0);
  L.fibers.resize(threads);
  if (stacks.size() < threads * kStack)
    stacks.resize(threads * kStack);

  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        L.st.blockIndex = {bx, by, bz};
        L.shared.assign(shared, static_cast<char>(0xff));

        // one fiber per thread
        for (size_t i = 0; i < threads; ++i) {
          Fiber& f = L.fibers[i];
          f.tid = {static_cast<unsigned>(i % block.x), static_cast<unsigned>(i / block.x % block.y),
                   static_cast<unsigned>(i / (size_t{block.x} * block.y))};
          f.warp = static_cast<int>(i / 32);
          f.wait = 0;
          f.done = false;
          f.rounds = 0;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = stacks.data() + i * kStack;
          f.ctx.uc_stack.ss_size = kStack;
          f.ctx.uc_link = &L.sched;
          makecontext(&f.ctx, fiberMain, 0);
        }

        // run every ready fiber to its next barrier or its end, then open the barriers
        for (;;) {
          for (Fiber& f : L.fibers) {
            if (f.done || f.wait != 0)
              continue;
            L.cur = &f;
            L.st.threadIndex = f.tid;
            swapcontext(&L.sched, &f.ctx);
          }
          size_t alive = 0, atBlock = 0;
          for (const Fiber& f : L.fibers) {
            if (f.done)
              continue;
            alive++;
            if (f.wait == 2)
              atBlock++;
          }
          if (alive == 0)
            break;
          bool opened = false;
          for (size_t w = 0; w < warps; ++w) {
            size_t live = 0, waiting = 0;
            for (size_t i = w * 32; i < std::min(threads, w * 32 + 32); ++i) {
              if (L.fibers[i].done)
                continue;
              live++;
              if (L.fibers[i].wait == 1)
                waiting++;
            }
            if (live > 0 && waiting == live) {
              for (size_t i = w * 32; i < std::min(threads, w * 32 + 32); ++i)
                L.fibers[i].wait = 0;
              opened = true;
            }
          }
          if (!opened && atBlock == alive) {
            for (Fiber& f : L.fibers)
              f.wait = 0;
            opened = true;
          }
          if (!opened)
            fail("deadlock: threads wait at barriers that others never reach");
        }
      }
  current = nullptr;
}

}  // namespace emu
