// Opens cuBLAS with dlopen and resolves the entry points of cublas_loader.h.
#include "cublas_loader.h"

#include <dlfcn.h>
#include <link.h>

#include <mutex>

namespace contranorm::blas {
namespace {

// The sonames tried, newest first: the module runs on cuBLAS 13 and on cuBLAS 12.
constexpr const char* kSonames[] = {"libcublas.so.13", "libcublas.so.12"};

Library* openLibrary(std::string* reason) {
  std::string tried;
  for (const char* soname : kSonames) {
    void* handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (why != nullptr ? why : soname);
      continue;
    }

    // resolve
    auto* lib = new Library();
    std::string missing;
#define CN_CUBLAS_RESOLVE(name, Fn)                                 \
  lib->api.name = reinterpret_cast<Fn<Ours>>(dlsym(handle, #name)); \
  if (lib->api.name == nullptr)                                     \
    missing += std::string(missing.empty() ? "" : ", ") + #name;
    CN_CUBLAS_ENTRY_POINTS(CN_CUBLAS_RESOLVE)
#undef CN_CUBLAS_RESOLVE

    // path
    struct link_map* map = nullptr;
    lib->path = soname;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
        map->l_name[0] != '\0') {
      lib->path = map->l_name;
    }
    if (!missing.empty()) {
      *reason = "cuBLAS at " + lib->path + " lacks " + missing;
      delete lib;
      dlclose(handle);
      return nullptr;
    }
    return lib;
  }
  *reason = "no cuBLAS: " + tried;
  return nullptr;
}

}  // namespace

const Library* loadCublas(std::string* reason) {
  // The library stays open for the life of the process; it is never closed, so no entry point
  // dangles while another thread still holds a handle.
  static std::once_flag once;
  static Library* library = nullptr;
  static std::string failure;
  std::call_once(once, [] { library = openLibrary(&failure); });
  if (library == nullptr && reason != nullptr)
    *reason = failure;
  return library;
}

const char* statusName(int status) {
  switch (status) {
    case kStatusSuccess:
      return "CUBLAS_STATUS_SUCCESS";
    case kStatusNotInitialized:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kStatusAllocFailed:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case kStatusInvalidValue:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case kStatusArchMismatch:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case kStatusMappingError:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case kStatusExecutionFailed:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case kStatusInternalError:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case kStatusNotSupported:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case kStatusLicenseError:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "CUBLAS_STATUS_UNKNOWN";
  }
}

}  // namespace contranorm::blas
