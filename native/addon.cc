// Module entry: the addon instance with probe(), memoryStats(), emptyCache(), the operations of
// addon_ops.cc, the internal benchmark hooks of addon_bench.cc, and the DeviceBuffer and Saved
// classes; plus the error and argument helpers.
#include "addon.h"

namespace contranorm::addon {

Napi::Error jsError(Napi::Env env, ErrorCode code, const std::string& message, size_t bytes) {
  Napi::Error error = code == ErrorCode::kArgType ? Napi::TypeError::New(env, message)
                      : code == ErrorCode::kShape || code == ErrorCode::kArgValue
                          ? Napi::RangeError::New(env, message)
                          : Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, errorCodeName(code)));
  if (code == ErrorCode::kOutOfMemory && bytes > 0) {
    error.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
  }
  return error;
}

std::string describe(Napi::Value value) {
  if (value.IsUndefined())
    return "undefined";
  if (value.IsNull())
    return "null";
  if (value.IsBoolean())
    return value.As<Napi::Boolean>().Value() ? "true" : "false";
  if (value.IsNumber())
    return "number " + value.ToString().Utf8Value();
  if (value.IsString())
    return "a string";
  if (value.IsTypedArray()) {
    Napi::TypedArray array = value.As<Napi::TypedArray>();
    const char* kind = "TypedArray";
    switch (array.TypedArrayType()) {
      case napi_float32_array:
        kind = "Float32Array";
        break;
      case napi_float64_array:
        kind = "Float64Array";
        break;
      case napi_int32_array:
        kind = "Int32Array";
        break;
      case napi_uint8_array:
        kind = "Uint8Array";
        break;
      default:
        break;
    }
    return std::string(kind) + " of length " + std::to_string(array.ElementLength());
  }
  if (value.IsArray())
    return "an Array";
  if (value.IsFunction())
    return "a function";
  return "an object";
}

void badArgument(const char* name, const std::string& expected, Napi::Value received,
                 ErrorCode code) {
  throw Error(code,
              std::string(name) + ": expected " + expected + ", received " + describe(received));
}

Addon::Addon(Napi::Env env, Napi::Object exports) {
  Napi::Function deviceBufferClass = DeviceBufferWrap::Define(env);
  Napi::Function savedClass = SavedWrap::Define(env);
  deviceBuffer = Napi::Persistent(deviceBufferClass);
  saved = Napi::Persistent(savedClass);
  DefineAddon(exports, {
                           InstanceMethod("probe", &Addon::Probe),
                           InstanceMethod("memoryStats", &Addon::MemoryStats),
                           InstanceMethod("emptyCache", &Addon::EmptyCache),
                           InstanceMethod("forward", &Addon::Forward),
                           InstanceMethod("forwardAsync", &Addon::ForwardAsync),
                           InstanceMethod("backward", &Addon::Backward),
                           InstanceMethod("backwardAsync", &Addon::BackwardAsync),
                           InstanceMethod("_benchTiming", &Addon::BenchTiming),
                           InstanceMethod("_benchTake", &Addon::BenchTake),
                           InstanceMethod("_benchDevice", &Addon::BenchDevice),
                           InstanceMethod("_benchGemm", &Addon::BenchGemm),
                           InstanceMethod("_benchCopy", &Addon::BenchCopy),
                           InstanceMethod("_benchResetPeak", &Addon::BenchResetPeak),
                           InstanceValue("DeviceBuffer", deviceBufferClass),
                           InstanceValue("Saved", savedClass),
                           InstanceValue("version", Napi::String::New(env, CONTRANORM_VERSION)),
                       });
}

// probe(): what can run, with the device found or the reason it cannot.
Napi::Value Addon::Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const ProbeResult& p = probe();
    Napi::Object out = Napi::Object::New(env);
    auto textOrNull = [&](const std::string& s) -> Napi::Value {
      return s.empty() ? env.Null() : Napi::String::New(env, s);
    };
    out.Set("ok", p.ok);
    out.Set("reason", textOrNull(p.reason));
    out.Set("missing", textOrNull(p.missing));
    out.Set("device", textOrNull(p.device));
    out.Set("computeCapability", p.device.empty()
                                     ? env.Null()
                                     : Napi::String::New(env, std::to_string(p.ccMajor) + "." +
                                                                  std::to_string(p.ccMinor)));
    out.Set("memory", Napi::Number::New(env, static_cast<double>(p.memory)));
    out.Set("cublas", textOrNull(p.cublasPath));
    out.Set("driverVersion", Napi::Number::New(env, p.driverVersion));
    out.Set("runtimeVersion", Napi::Number::New(env, p.runtimeVersion));
    return out;
  });
}

// memoryStats(): the caching allocator's counters.
Napi::Value Addon::MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const contranorm::MemoryStats s = memoryStats();
  Napi::Object out = Napi::Object::New(env);
  out.Set("reservedBytes", Napi::Number::New(env, static_cast<double>(s.reservedBytes)));
  out.Set("allocatedBytes", Napi::Number::New(env, static_cast<double>(s.allocatedBytes)));
  out.Set("peakReservedBytes", Napi::Number::New(env, static_cast<double>(s.peakReservedBytes)));
  out.Set("peakAllocatedBytes", Napi::Number::New(env, static_cast<double>(s.peakAllocatedBytes)));
  out.Set("mallocCalls", Napi::Number::New(env, static_cast<double>(s.mallocCalls)));
  out.Set("freeCalls", Napi::Number::New(env, static_cast<double>(s.freeCalls)));
  return out;
}

// emptyCache(): gives every cached, unused block back to the device.
Napi::Value Addon::EmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [] { emptyCache(); });
  return env.Undefined();
}

}  // namespace contranorm::addon

using ContraNormAddon = contranorm::addon::Addon;
NODE_API_NAMED_ADDON(contranorm, ContraNormAddon)
