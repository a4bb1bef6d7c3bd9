// forward / backward and their Promise forms. Arguments are checked here again (the addon can be
// loaded on its own), inputs are read in place and outputs written in place; the Promise forms
// run in an AsyncWorker whose Execute touches no JavaScript value, holding references to every
// buffer it reads or writes until it settles.
#include <cmath>
#include <limits>
#include <vector>

#include "addon.h"

namespace contranorm::addon {
namespace {

// ----- reading the plan -----

int64_t readInt(Napi::Object o, const char* key, const char* name) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber())
    badArgument(name, "a non-negative integer", v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0 && std::floor(d) == d)) {
    badArgument(name, "a non-negative integer", v, ErrorCode::kShape);
  }
  return static_cast<int64_t>(d);
}

bool readBool(Napi::Object o, const char* key, const char* name) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean())
    badArgument(name, "a boolean", v);
  return v.As<Napi::Boolean>().Value();
}

double readPositive(Napi::Object o, const char* key, const char* name) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber())
    badArgument(name, "a finite positive number", v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(std::isfinite(d) && d > 0))
    badArgument(name, "a finite positive number", v, ErrorCode::kArgValue);
  return d;
}

/** Which of `a` or `b` the string at `key` is: false for a, true for b. */
bool readChoice(Napi::Object o, const char* key, const char* name, const char* a, const char* b) {
  Napi::Value v = o.Get(key);
  const std::string expected = std::string("'") + a + "' or '" + b + "'";
  if (!v.IsString())
    badArgument(name, expected, v);
  const std::string s = v.As<Napi::String>().Utf8Value();
  if (s != a && s != b)
    badArgument(name, expected, v, ErrorCode::kArgValue);
  return s == b;
}

/** A typed array of `type` at `key`, or an empty value for null when `nullable`. */
Napi::TypedArray readTyped(Napi::Object o, const char* key, const char* name,
                           napi_typedarray_type type, const char* typeName, bool nullable) {
  Napi::Value v = o.Get(key);
  if (nullable && v.IsNull())
    return Napi::TypedArray();
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    badArgument(name, std::string(nullable ? "null or " : "") + "a " + typeName, v);
  }
  return v.As<Napi::TypedArray>();
}

std::vector<float> copyFloats(Napi::TypedArray array) {
  if (array.IsEmpty())
    return {};
  Napi::TypedArrayOf<float> f = array.As<Napi::TypedArrayOf<float>>();
  return std::vector<float>(f.Data(), f.Data() + f.ElementLength());
}

/** a * b, or a shape error when it passes `limit`. */
int64_t product(int64_t a, int64_t b, int64_t limit, const char* what) {
  if (a != 0 && b > limit / a) {
    throw Error(ErrorCode::kShape, std::string("plan: ") + what + " is too large for this module");
  }
  return a * b;
}

/** The plan of a forward call (the TypeScript `Plan`), validated; `*mask` receives the mask. */
ForwardDesc readPlan(Napi::Value value, Napi::TypedArray* mask) {
  if (!value.IsObject())
    badArgument("plan", "an object", value);
  Napi::Object o = value.As<Napi::Object>();
  ForwardDesc f;

  // shape
  f.B = readInt(o, "B", "plan.B");
  f.N = readInt(o, "N", "plan.N");
  f.D = readInt(o, "D", "plan.D");
  f.features = readChoice(o, "mode", "plan.mode", "tokens", "features");
  const int64_t M = f.features ? f.D : f.N;
  if (readInt(o, "M", "plan.M") != M) {
    badArgument("plan.M", std::to_string(M) + " (N in tokens mode, D in features mode)", o.Get("M"),
                ErrorCode::kShape);
  }
  const int64_t limit = int64_t{1} << 62;
  product(product(f.B, f.N, limit, "B*N*D"), f.D, int64_t{1} << 40, "B*N*D");
  const int64_t MM = product(M, M, limit, "M*M");
  product(f.B, MM, limit, "B*M*M");

  // scale
  Napi::TypedArray scale =
      readTyped(o, "scale", "plan.scale", napi_float32_array, "Float32Array", false);
  if (scale.ElementLength() != 1 && static_cast<int64_t>(scale.ElementLength()) != f.D) {
    badArgument("plan.scale", "a Float32Array of length 1 or D = " + std::to_string(f.D), scale,
                ErrorCode::kShape);
  }
  f.scale = copyFloats(scale);
  f.scaleExp = readChoice(o, "scaleParam", "plan.scaleParam", "linear", "exp");
  f.temperature = readPositive(o, "temperature", "plan.temperature");
  f.identity = readBool(o, "identity", "plan.identity");
  f.dualNorm = readBool(o, "dualNorm", "plan.dualNorm");
  f.preNorm = readBool(o, "preNorm", "plan.preNorm");

  // lengths and mask
  Napi::TypedArray lengths =
      readTyped(o, "lengths", "plan.lengths", napi_int32_array, "Int32Array", true);
  if (!lengths.IsEmpty()) {
    if (static_cast<int64_t>(lengths.ElementLength()) != f.B) {
      badArgument("plan.lengths", "an Int32Array of length B = " + std::to_string(f.B), lengths,
                  ErrorCode::kShape);
    }
    Napi::TypedArrayOf<int32_t> l = lengths.As<Napi::TypedArrayOf<int32_t>>();
    f.lengths.assign(l.Data(), l.Data() + l.ElementLength());
    for (size_t b = 0; b < f.lengths.size(); ++b) {
      if (f.lengths[b] < 0 || f.lengths[b] > f.N) {
        throw Error(ErrorCode::kArgValue, "plan.lengths[" + std::to_string(b) +
                                              "]: expected an integer in [0, N], received " +
                                              std::to_string(f.lengths[b]));
      }
    }
  }
  *mask = readTyped(o, "mask", "plan.mask", napi_uint8_array, "Uint8Array", true);
  f.maskBatched = readBool(o, "maskBatched", "plan.maskBatched");
  if (!mask->IsEmpty()) {
    const int64_t want = f.maskBatched ? f.B * MM : MM;
    if (static_cast<int64_t>(mask->ElementLength()) != want) {
      badArgument("plan.mask", "a Uint8Array of length " + std::to_string(want), *mask,
                  ErrorCode::kShape);
    }
    f.mask = mask->As<Napi::TypedArrayOf<uint8_t>>().Data();
  }

  // layer norm and the rest
  f.layerNorm = readBool(o, "layerNorm", "plan.layerNorm");
  f.weight =
      copyFloats(readTyped(o, "weight", "plan.weight", napi_float32_array, "Float32Array", true));
  f.bias = copyFloats(readTyped(o, "bias", "plan.bias", napi_float32_array, "Float32Array", true));
  for (const auto* v : {&f.weight, &f.bias}) {
    if (!v->empty() && static_cast<int64_t>(v->size()) != f.D) {
      throw Error(ErrorCode::kShape,
                  "plan.weight and plan.bias: expected length D = " + std::to_string(f.D));
    }
  }
  if (!f.layerNorm && (!f.weight.empty() || !f.bias.empty())) {
    throw Error(ErrorCode::kArgValue, "plan.weight and plan.bias: expected null without layerNorm");
  }
  f.lnEps = readPositive(o, "lnEps", "plan.lnEps");
  f.eps = readPositive(o, "eps", "plan.eps");
  f.tf32 = readChoice(o, "precision", "plan.precision", "fp32", "tf32");
  f.save = readBool(o, "saveForBackward", "plan.saveForBackward");
  return f;
}

// ----- inputs and outputs -----

/** A Float32Array or DeviceBuffer of `length` elements: where a tensor argument lives. */
struct Tensor {
  const float* host = nullptr;
  size_t hostBytes = 0;
  DeviceArrayPtr device;
};

Tensor readTensor(Napi::Env env, Napi::Value value, const char* name, size_t length) {
  const std::string expected = "a Float32Array or DeviceBuffer of length " + std::to_string(length);
  Tensor t;
  t.device = DeviceBufferWrap::unwrap(env, value, name);
  if (t.device != nullptr) {
    if (deviceArrayLength(*t.device) != length)
      badArgument(name, expected, value, ErrorCode::kShape);
    return t;
  }
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    badArgument(name, expected, value);
  }
  Napi::TypedArrayOf<float> array = value.As<Napi::TypedArrayOf<float>>();
  if (array.ElementLength() != length)
    badArgument(name, expected, value, ErrorCode::kShape);
  t.host = array.Data();
  t.hostBytes = length * sizeof(float);
  return t;
}

/** Refuses an output that shares memory with the input. */
void checkDisjoint(const Tensor& in, const Tensor& out, const char* inName, const char* outName) {
  bool overlap = false;
  if (in.device != nullptr) {
    overlap = in.device == out.device;
  } else if (out.host != nullptr && in.hostBytes > 0 && out.hostBytes > 0) {
    const char* a = reinterpret_cast<const char*>(in.host);
    const char* b = reinterpret_cast<const char*>(out.host);
    overlap = a < b + out.hostBytes && b < a + in.hostBytes;
  }
  if (overlap) {
    throw Error(ErrorCode::kArgValue, std::string(outName) + ": expected memory apart from " +
                                          inName + ", received an overlapping buffer");
  }
}

Input asInput(const Tensor& t) {
  return Input{t.host, t.device};
}

Output asOutput(const Tensor& t) {
  return Output{const_cast<float*>(t.host), t.device};
}

/** A forward call's arguments, read and checked. */
struct ForwardCall {
  ForwardDesc desc;
  Tensor x, y;
};

ForwardCall readForward(const Napi::CallbackInfo& info, Napi::TypedArray* mask) {
  Napi::Env env = info.Env();
  ForwardCall c;
  c.desc = readPlan(info[1], mask);
  const size_t length = static_cast<size_t>(c.desc.B * c.desc.N * c.desc.D);
  c.x = readTensor(env, info[0], "x", length);
  c.y = readTensor(env, info[2], "y", length);
  checkDisjoint(c.x, c.y, "x", "y");
  return c;
}

/** A backward call's arguments, read and checked. */
struct BackwardCall {
  SavedPtr saved;
  Tensor dy, dx;
};

BackwardCall readBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  BackwardCall c;
  c.saved = SavedWrap::unwrap(env, info[1], "saved");
  int64_t B = 0, N = 0, D = 0;
  savedShape(*c.saved, &B, &N, &D);
  const size_t length = static_cast<size_t>(B * N * D);
  c.dy = readTensor(env, info[0], "dy", length);
  c.dx = readTensor(env, info[2], "dx", length);
  checkDisjoint(c.dy, c.dx, "dy", "dx");
  return c;
}

Napi::Value gradsObject(Napi::Env env, const Grads& g) {
  auto array = [&](const std::vector<float>& v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  };
  Napi::Object out = Napi::Object::New(env);
  out.Set("dScale", array(g.dScale));
  if (!g.dWeight.empty())
    out.Set("dWeight", array(g.dWeight));
  if (!g.dBias.empty())
    out.Set("dBias", array(g.dBias));
  return out;
}

// ----- Promise forms -----

/**
 * An operation run off the JavaScript thread. Execute calls run() and keeps any failure as plain
 * values; the Promise settles on the JavaScript thread, which also drops the references that kept
 * the arguments alive.
 */
class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  /** Keeps `value` (a buffer or wrapper the operation reads or writes) alive until settled. */
  void keep(Napi::Value value) {
    if (value.IsObject())
      refs_.push_back(Napi::Persistent(value.As<Napi::Object>()));
  }

 protected:
  virtual void run() = 0;
  virtual Napi::Value result(Napi::Env env) = 0;

  void Execute() final {
    try {
      run();
    } catch (const Error& e) {
      code_ = e.code();
      bytes_ = e.bytes();
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = ErrorCode::kNative;
      SetError(e.what());
    } catch (...) {
      code_ = ErrorCode::kNative;
      SetError("unknown failure in the native module");
    }
  }

  void OnOK() final {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    try {
      deferred_.Resolve(guarded(env, [&] { return result(env); }));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

  void OnError(const Napi::Error& e) final {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    deferred_.Reject(jsError(env, code_, e.Message(), bytes_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> refs_;
  ErrorCode code_ = ErrorCode::kNative;
  size_t bytes_ = 0;
};

class ForwardWorker : public OpWorker {
 public:
  ForwardWorker(Napi::Env env, ForwardCall call)
      : OpWorker(env, "contranorm.forward"), call_(std::move(call)) {}

 protected:
  void run() override { saved_ = forward(call_.desc, asInput(call_.x), asOutput(call_.y)); }
  Napi::Value result(Napi::Env env) override {
    return saved_ == nullptr ? env.Null() : SavedWrap::wrap(env, std::move(saved_));
  }

 private:
  ForwardCall call_;
  SavedPtr saved_;
};

class BackwardWorker : public OpWorker {
 public:
  BackwardWorker(Napi::Env env, BackwardCall call)
      : OpWorker(env, "contranorm.backward"), call_(std::move(call)) {}

 protected:
  void run() override { grads_ = backward(*call_.saved, asInput(call_.dy), asOutput(call_.dx)); }
  Napi::Value result(Napi::Env env) override { return gradsObject(env, grads_); }

 private:
  BackwardCall call_;
  Grads grads_;
};

}  // namespace

// forward(x, plan, y): writes y, returns the saved context or null.
Napi::Value Addon::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::TypedArray mask;
    ForwardCall c = readForward(info, &mask);
    SavedPtr saved = forward(c.desc, asInput(c.x), asOutput(c.y));
    return saved == nullptr ? env.Null() : SavedWrap::wrap(env, std::move(saved));
  });
}

// forwardAsync(x, plan, y): the same as a Promise.
Napi::Value Addon::ForwardAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    Napi::TypedArray mask;
    ForwardCall c = readForward(info, &mask);
    auto* worker = new ForwardWorker(env, std::move(c));
    worker->keep(info[0]);
    worker->keep(info[2]);
    if (!mask.IsEmpty())
      worker->keep(mask);
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  });
}

// backward(dy, saved, dx): writes dx, returns { dScale, dWeight?, dBias? }.
Napi::Value Addon::Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    BackwardCall c = readBackward(info);
    return gradsObject(env, backward(*c.saved, asInput(c.dy), asOutput(c.dx)));
  });
}

// backwardAsync(dy, saved, dx): the same as a Promise.
Napi::Value Addon::BackwardAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    BackwardCall c = readBackward(info);
    auto* worker = new BackwardWorker(env, std::move(c));
    worker->keep(info[0]);
    worker->keep(info[2]);
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  });
}

}  // namespace contranorm::addon
