// The wrapped classes: DeviceBuffer (a float array in device memory) and Saved (a forward call's
// context). Each reports its device bytes to V8 as external memory, so that garbage collection
// sees the pressure, and frees them on dispose()/release() or, as a safety net only, when it is
// collected.
#include <cmath>

#include "addon.h"

namespace contranorm::addon {
namespace {

/** A non-negative integer argument, at most 2^53. */
size_t readLength(Napi::Value value, const char* name) {
  const double max = 9007199254740991.0;
  if (!value.IsNumber())
    badArgument(name, "a non-negative integer", value);
  const double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0 && v <= max && std::floor(v) == v)) {
    badArgument(name, "a non-negative integer", value, ErrorCode::kArgValue);
  }
  return static_cast<size_t>(v);
}

/** A Float32Array argument of exactly `length` elements. */
Napi::TypedArrayOf<float> readFloat32(Napi::Value value, const char* name, size_t length) {
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    badArgument(name, "a Float32Array", value);
  }
  Napi::TypedArrayOf<float> array = value.As<Napi::TypedArrayOf<float>>();
  if (array.ElementLength() != length) {
    badArgument(name, "a Float32Array of length " + std::to_string(length), value,
                ErrorCode::kShape);
  }
  return array;
}

}  // namespace

// ----- DeviceBuffer -----

Napi::Function DeviceBufferWrap::Define(Napi::Env env) {
  return DefineClass(env, "DeviceBuffer",
                     {
                         InstanceMethod("upload", &DeviceBufferWrap::Upload),
                         InstanceMethod("download", &DeviceBufferWrap::Download),
                         InstanceMethod("dispose", &DeviceBufferWrap::Dispose),
                         InstanceAccessor("length", &DeviceBufferWrap::GetLength, nullptr),
                         InstanceAccessor("disposed", &DeviceBufferWrap::GetDisposed, nullptr),
                     });
}

// new DeviceBuffer(length): `length` floats of device memory, uninitialized.
DeviceBufferWrap::DeviceBufferWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<DeviceBufferWrap>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    length_ = readLength(info[0], "length");
    array_ = makeDeviceArray(length_);
  });
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(length_ * sizeof(float)));
}

DeviceArrayPtr DeviceBufferWrap::unwrap(Napi::Env env, Napi::Value value, const char* name) {
  auto* addon = env.GetInstanceData<Addon>();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon->deviceBuffer.Value())) {
    return nullptr;
  }
  DeviceBufferWrap* self = Unwrap(value.As<Napi::Object>());
  if (self->array_ == nullptr) {
    throw Error(ErrorCode::kDisposed, std::string(name) + ": this DeviceBuffer was disposed");
  }
  return self->array_;
}

// upload(src): copies a Float32Array of the buffer's length to the device.
Napi::Value DeviceBufferWrap::Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    if (array_ == nullptr)
      throw Error(ErrorCode::kDisposed, "this DeviceBuffer was disposed");
    Napi::TypedArrayOf<float> src = readFloat32(info[0], "src", length_);
    uploadDeviceArray(*array_, src.Data(), length_);
  });
  return env.Undefined();
}

// download(dst): copies the buffer into a Float32Array of its length.
Napi::Value DeviceBufferWrap::Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    if (array_ == nullptr)
      throw Error(ErrorCode::kDisposed, "this DeviceBuffer was disposed");
    Napi::TypedArrayOf<float> dst = readFloat32(info[0], "dst", length_);
    downloadDeviceArray(*array_, dst.Data(), length_);
  });
  return env.Undefined();
}

// dispose(): frees the device memory now (work in flight keeps it until it ends).
Napi::Value DeviceBufferWrap::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value DeviceBufferWrap::GetLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(length_));
}

Napi::Value DeviceBufferWrap::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), array_ == nullptr);
}

void DeviceBufferWrap::Finalize(Napi::Env env) {
  release(env);
}

void DeviceBufferWrap::release(Napi::Env env) {
  if (array_ == nullptr)
    return;
  array_.reset();
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(length_ * sizeof(float)));
}

// ----- Saved -----

Napi::Function SavedWrap::Define(Napi::Env env) {
  return DefineClass(env, "Saved",
                     {
                         InstanceMethod("release", &SavedWrap::Release),
                         InstanceAccessor("bytes", &SavedWrap::GetBytes, nullptr),
                         InstanceAccessor("released", &SavedWrap::GetReleased, nullptr),
                     });
}

Napi::Object SavedWrap::wrap(Napi::Env env, SavedPtr saved) {
  auto* addon = env.GetInstanceData<Addon>();
  return addon->saved.New({Napi::External<SavedPtr>::New(env, &saved)});
}

// Made by forward calls only: the one argument is an External holding the context.
SavedWrap::SavedWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SavedWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw jsError(env, ErrorCode::kArgType, "Saved: made by forward calls only");
  }
  saved_ = std::move(*info[0].As<Napi::External<SavedPtr>>().Data());
  bytes_ = savedBytes(*saved_);
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
}

SavedPtr SavedWrap::unwrap(Napi::Env env, Napi::Value value, const char* name) {
  auto* addon = env.GetInstanceData<Addon>();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon->saved.Value())) {
    badArgument(name, "the saved context of a forward call", value);
  }
  SavedWrap* self = Unwrap(value.As<Napi::Object>());
  if (self->saved_ == nullptr) {
    throw Error(ErrorCode::kDisposed, std::string(name) + ": this context was released");
  }
  return self->saved_;
}

// release(): frees the saved device memory now (a backward in flight keeps it until it ends).
Napi::Value SavedWrap::Release(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value SavedWrap::GetBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
}

Napi::Value SavedWrap::GetReleased(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), saved_ == nullptr);
}

void SavedWrap::Finalize(Napi::Env env) {
  release(env);
}

void SavedWrap::release(Napi::Env env) {
  if (saved_ == nullptr)
    return;
  saved_.reset();
  Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes_));
}

}  // namespace contranorm::addon
