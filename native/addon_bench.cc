// Internal hooks for the GPU benchmark (bench/gpu/bench.ts), named with a leading underscore and
// left out of the package's API: CUDA-event timing of calls and of their cuBLAS products, facts
// of the device, the two ceilings (a large product, a large copy), and the allocator's peaks.
#include <cmath>

#include "addon.h"

namespace contranorm::addon {
namespace {

/** An integer argument in [lo, hi]. */
double readInteger(Napi::Value value, const char* name, double lo, double hi) {
  if (!value.IsNumber())
    badArgument(name, "an integer", value);
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= lo && v <= hi && std::floor(v) == v)) {
    badArgument(name,
                "an integer in [" + std::to_string(static_cast<int64_t>(lo)) + ", " +
                    std::to_string(static_cast<int64_t>(hi)) + "]",
                value, ErrorCode::kArgValue);
  }
  return v;
}

Napi::Array numbers(Napi::Env env, const std::vector<double>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); ++i)
    out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, values[i]));
  return out;
}

}  // namespace

// _benchTiming(level): what calls record from now on (0 nothing, 1 calls, 2 calls and products).
Napi::Value Addon::BenchTiming(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] { bench::setTiming(static_cast<int>(readInteger(info[0], "level", 0, 2))); });
  return env.Undefined();
}

// _benchTake(): [{ op, startMs, endMs, productMs, products }] of the calls recorded since the
// last take; times from the start of the first one.
Napi::Value Addon::BenchTake(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::vector<bench::CallTime> times = bench::takeTimes();
    Napi::Array out = Napi::Array::New(env, times.size());
    for (size_t i = 0; i < times.size(); ++i) {
      const bench::CallTime& t = times[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("op", t.op == bench::Op::kForward ? "forward" : "backward");
      o.Set("startMs", t.startMs);
      o.Set("endMs", t.endMs);
      o.Set("productMs", t.productMs);
      o.Set("products", static_cast<double>(t.products));
      out.Set(static_cast<uint32_t>(i), o);
    }
    return out;
  });
}

// _benchDevice(): { l2Bytes, smCount, freeBytes, totalBytes } of device 0.
Napi::Value Addon::BenchDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const bench::DeviceFacts f = bench::deviceFacts();
    Napi::Object o = Napi::Object::New(env);
    o.Set("l2Bytes", static_cast<double>(f.l2Bytes));
    o.Set("smCount", static_cast<double>(f.smCount));
    o.Set("freeBytes", static_cast<double>(f.freeBytes));
    o.Set("totalBytes", static_cast<double>(f.totalBytes));
    return o;
  });
}

// _benchGemm(n, tf32, reps): milliseconds of each n x n x n product.
Napi::Value Addon::BenchGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto n = static_cast<int64_t>(readInteger(info[0], "n", 1, 65536));
    if (!info[1].IsBoolean())
      badArgument("tf32", "a boolean", info[1]);
    const int reps = static_cast<int>(readInteger(info[2], "reps", 1, 100000));
    return numbers(env, bench::timeGemm(n, info[1].As<Napi::Boolean>().Value(), reps));
  });
}

// _benchCopy(bytes, reps): milliseconds of each device-to-device copy of `bytes`.
Napi::Value Addon::BenchCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto bytes = static_cast<size_t>(readInteger(info[0], "bytes", 1, 9007199254740991.0));
    const int reps = static_cast<int>(readInteger(info[1], "reps", 1, 100000));
    return numbers(env, bench::timeCopy(bytes, reps));
  });
}

// _benchResetPeak(): starts the peaks of memoryStats() again from the current figures.
Napi::Value Addon::BenchResetPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [] { bench::resetPeakMemory(); });
  return env.Undefined();
}

}  // namespace contranorm::addon
