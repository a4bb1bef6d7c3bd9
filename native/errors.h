// Errors of the native module. Every failure inside it is a contranorm::Error with a stable code;
// the Node-API glue turns it into a JavaScript error whose `code` is the name below. Nothing in
// the module exits or aborts the process.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace contranorm {

/** What went wrong, one value per JavaScript `code`. */
enum class ErrorCode {
  kArgType,      // an argument of the wrong type
  kShape,        // a length or shape that does not match
  kArgValue,     // a value out of range
  kDisposed,     // a device buffer or saved context used after dispose()
  kUnavailable,  // CUDA cannot run here: no driver, no device, no cuBLAS
  kCuda,         // a CUDA runtime call or kernel launch failed
  kCublas,       // a cuBLAS call failed
  kOutOfMemory,  // the device has no room for an allocation
  kNative,       // anything else raised inside the module
};

/** The JavaScript `code` of an error code, such as `ERR_CONTRANORM_CUDA`. */
inline const char* errorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kArgType:
      return "ERR_CONTRANORM_ARG_TYPE";
    case ErrorCode::kShape:
      return "ERR_CONTRANORM_SHAPE";
    case ErrorCode::kArgValue:
      return "ERR_CONTRANORM_ARG_VALUE";
    case ErrorCode::kDisposed:
      return "ERR_CONTRANORM_DISPOSED";
    case ErrorCode::kUnavailable:
      return "ERR_CONTRANORM_BACKEND_UNAVAILABLE";
    case ErrorCode::kCuda:
      return "ERR_CONTRANORM_CUDA";
    case ErrorCode::kCublas:
      return "ERR_CONTRANORM_CUBLAS";
    case ErrorCode::kOutOfMemory:
      return "ERR_CONTRANORM_OUT_OF_MEMORY";
    case ErrorCode::kNative:
      break;
  }
  return "ERR_CONTRANORM_NATIVE";
}

/** A failure with its code; `bytes` is the size asked for when the device ran out of memory. */
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, size_t bytes = 0)
      : std::runtime_error(message), code_(code), bytes_(bytes) {}

  ErrorCode code() const { return code_; }
  size_t bytes() const { return bytes_; }

 private:
  ErrorCode code_;
  size_t bytes_;
};

}  // namespace contranorm
