// Keeps the module loadable on glibc 2.34 (RHEL 9, Ubuntu 22.04, Amazon Linux 2023).
//
// The module links libstdc++ statically, so it needs no particular libstdc++ on the user's
// machine. The static libstdc++ of g++ 12 pulls in std::random_device (through the old-ABI string
// instantiations that the static CUDA runtime uses), whose entropy source is glibc's arc4random,
// new in glibc 2.36. The module never makes a random_device; this definition, hidden and linked
// before the C library, answers that one reference through getrandom (glibc 2.25) instead.
#include <sys/random.h>

#include <cerrno>
#include <cstdint>

extern "C" uint32_t arc4random(void) {
  uint32_t value = 0;
  char* p = reinterpret_cast<char*>(&value);
  size_t left = sizeof value;
  while (left > 0) {
    const ssize_t got = getrandom(p, left, 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;  // no getrandom (a kernel before 3.17): the bytes read so far, else 0
    p += got;
    left -= static_cast<size_t>(got);
  }
  return value;
}
