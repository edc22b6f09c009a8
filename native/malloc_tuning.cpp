#include "malloc_tuning.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace xt {

namespace {

// Allocations below this come from the heap, not from mmap: 32 MiB, the most glibc accepts
// (half its 64 MiB arena heaps); a pass's larger tensors are few and mapped anyway.
constexpr int64_t kMmapThreshold = int64_t{32} << 20;
// Free memory kept at a heap's top before it goes back to the OS: above what one training step of
// the benchmark shapes frees and allocates again (about 30 MB for Xception at batch 8).
constexpr int64_t kTrimThreshold = int64_t{256} << 20;

bool user_set_thresholds() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_")) return true;
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables &&
         (std::strstr(tunables, "glibc.malloc.mmap_threshold") || std::strstr(tunables, "glibc.malloc.trim_threshold"));
}

MallocSettings apply() {
  MallocSettings s;
#if defined(__GLIBC__)
  const char* choice = std::getenv("XCEPTION_TORCH_MALLOC");
  if (choice && std::strcmp(choice, "default") == 0) {
    s.mode = "default";
  } else if (user_set_thresholds()) {
    s.mode = "environment";
  } else if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThreshold)) == 1 &&
             mallopt(M_TRIM_THRESHOLD, static_cast<int>(kTrimThreshold)) == 1) {
    s.mode = "tuned";
    s.mmap_threshold = kMmapThreshold;
    s.trim_threshold = kTrimThreshold;
  } else {
    s.mode = "default";  // this glibc refused the values
  }
#else
  s.mode = "unavailable";
#endif
  return s;
}

}  // namespace

const MallocSettings& tune_malloc() {
  static const MallocSettings settings = apply();
  return settings;
}

void release_free_memory() {
#if defined(__GLIBC__)
  if (tune_malloc().mode == "tuned") malloc_trim(0);
#endif
}

void* allocate_own_pages(size_t bytes) {
  void* block = mmap(nullptr, bytes == 0 ? 1 : bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) throw std::bad_alloc();
  return block;
}

void free_own_pages(void* block, size_t bytes) { munmap(block, bytes == 0 ? 1 : bytes); }

}  // namespace xt
