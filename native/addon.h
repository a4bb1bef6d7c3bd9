// Node-API glue shared by the addon*.cc files: the addon instance (one per JavaScript context, so
// the module loads in the main thread and in worker threads at once), the wrapped classes, and
// argument reading and error conversion. No CUDA header is included on this side.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

#include "contranorm.h"

namespace contranorm::addon {

/** The per-context instance: the exported functions and the constructors of wrapped classes. */
class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);

  Napi::FunctionReference deviceBuffer;
  Napi::FunctionReference saved;

 private:
  Napi::Value Probe(const Napi::CallbackInfo& info);
  Napi::Value MemoryStats(const Napi::CallbackInfo& info);
  Napi::Value EmptyCache(const Napi::CallbackInfo& info);
  // addon_ops.cc
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value ForwardAsync(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value BackwardAsync(const Napi::CallbackInfo& info);
  // addon_bench.cc: internal, for bench/gpu/bench.ts only
  Napi::Value BenchTiming(const Napi::CallbackInfo& info);
  Napi::Value BenchTake(const Napi::CallbackInfo& info);
  Napi::Value BenchDevice(const Napi::CallbackInfo& info);
  Napi::Value BenchGemm(const Napi::CallbackInfo& info);
  Napi::Value BenchCopy(const Napi::CallbackInfo& info);
  Napi::Value BenchResetPeak(const Napi::CallbackInfo& info);
};

/** `DeviceBuffer`: a float array in device memory, freed by dispose() or, failing that, by GC. */
class DeviceBufferWrap : public Napi::ObjectWrap<DeviceBufferWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  /** The wrapped array when `value` is a live DeviceBuffer, null when it is not a DeviceBuffer;
   * throws kDisposed for a disposed one. */
  static DeviceArrayPtr unwrap(Napi::Env env, Napi::Value value, const char* name);

  explicit DeviceBufferWrap(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

 private:
  Napi::Value Upload(const Napi::CallbackInfo& info);
  Napi::Value Download(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value GetLength(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  void release(Napi::Env env);

  DeviceArrayPtr array_;
  size_t length_ = 0;
};

/** A forward call's saved context: device memory for the backward, freed by release() or GC. */
class SavedWrap : public Napi::ObjectWrap<SavedWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  /** A new JavaScript object holding `saved`. */
  static Napi::Object wrap(Napi::Env env, SavedPtr saved);
  /** The context behind `value`; throws unless it is a live saved context. */
  static SavedPtr unwrap(Napi::Env env, Napi::Value value, const char* name);

  explicit SavedWrap(const Napi::CallbackInfo& info);
  void Finalize(Napi::Env env) override;

 private:
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value GetBytes(const Napi::CallbackInfo& info);
  Napi::Value GetReleased(const Napi::CallbackInfo& info);
  void release(Napi::Env env);

  SavedPtr saved_;
  size_t bytes_ = 0;
};

/** The JavaScript error for a code: TypeError, RangeError or Error, with `code` (and `bytes`). */
Napi::Error jsError(Napi::Env env, ErrorCode code, const std::string& message, size_t bytes = 0);

/** Runs `body`, turning a contranorm::Error or any C++ exception into a JavaScript error. */
template <class Body>
auto guarded(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw jsError(env, e.code(), e.what(), e.bytes());
  } catch (const std::exception& e) {
    throw jsError(env, ErrorCode::kNative, e.what());
  }
}

/** A short description of a value for messages: `Float32Array of length 3`, `number 2`, ... */
std::string describe(Napi::Value value);

/** Throws kArgType (or `code`) with "name: expected ..., received ...". */
[[noreturn]] void badArgument(const char* name, const std::string& expected, Napi::Value received,
                              ErrorCode code = ErrorCode::kArgType);

}  // namespace contranorm::addon
