#include "malloc_tuning.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include <unistd.h>

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
// Extra room asked for whenever a heap grows, and, what matters here, the free space a thread's
// arena keeps before it unmaps a whole heap. Work runs on compute threads, whose arenas are made of
// 64 MiB heaps; glibc deletes a heap as soon as it is empty, whatever the trim threshold, unless the
// top pad exceeds the heap size. An Xception eval pass (96x96, batch 8) needs more than one heap, so
// every pass unmapped about three and faulted 7,400 pages (30 MB) back in: on a virtual machine
// where a page fault costs ~10 us, half of the pass's time (100 ms a pass against 51 with this).
constexpr int64_t kTopPad = int64_t{64} << 20;

bool user_set_thresholds() {
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") ||
      std::getenv("MALLOC_TOP_PAD_")) {
    return true;
  }
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  return tunables &&
         (std::strstr(tunables, "glibc.malloc.mmap_threshold") ||
          std::strstr(tunables, "glibc.malloc.trim_threshold") || std::strstr(tunables, "glibc.malloc.top_pad"));
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
             mallopt(M_TRIM_THRESHOLD, static_cast<int>(kTrimThreshold)) == 1 &&
             mallopt(M_TOP_PAD, static_cast<int>(kTopPad)) == 1) {
    s.mode = "tuned";
    s.mmap_threshold = kMmapThreshold;
    s.trim_threshold = kTrimThreshold;
    s.top_pad = kTopPad;
  } else {
    s.mode = "default";  // this glibc refused the values
  }
#else
  s.mode = "unavailable";
#endif
  return s;
}

}  // namespace

namespace {

// Freed blocks kept for the next copy of the same size: a loop of forward() calls copies same-sized
// inputs, and mapping fresh pages for each cost a page fault per 4 KiB (216 for a batch of 8 at
// 96x96, about 1 ms a call on a virtual machine). Bounded in count and bytes; emptied by
// release_free_memory().
constexpr size_t kKeptBlocks = 4;
constexpr size_t kKeptBytes = size_t{64} << 20;

struct KeptPages {
  std::mutex mutex;
  std::vector<std::pair<void*, size_t> > blocks;  // (block, mapped length)
  size_t bytes = 0;
};

KeptPages& kept_pages() {
  static auto* kept = new KeptPages();  // never destroyed: tensors may free their copy at exit
  return *kept;
}

size_t mapped_length(size_t bytes) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (bytes == 0 ? page : (bytes + page - 1) / page * page);
}

void unmap_kept_pages() {
  auto& kept = kept_pages();
  std::vector<std::pair<void*, size_t> > blocks;
  {
    std::lock_guard<std::mutex> lock(kept.mutex);
    blocks.swap(kept.blocks);
    kept.bytes = 0;
  }
  for (const auto& [block, length] : blocks) munmap(block, length);
}

}  // namespace

const MallocSettings& tune_malloc() {
  static const MallocSettings settings = apply();
  return settings;
}

void release_free_memory() {
  unmap_kept_pages();
#if defined(__GLIBC__)
  if (tune_malloc().mode == "tuned") malloc_trim(0);
#endif
}

void* allocate_own_pages(size_t bytes) {
  const size_t length = mapped_length(bytes);
  {
    auto& kept = kept_pages();
    std::lock_guard<std::mutex> lock(kept.mutex);
    for (size_t i = 0; i < kept.blocks.size(); i++) {
      if (kept.blocks[i].second != length) continue;
      void* block = kept.blocks[i].first;
      kept.blocks.erase(kept.blocks.begin() + static_cast<std::ptrdiff_t>(i));
      kept.bytes -= length;
      return block;
    }
  }
  void* block = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (block == MAP_FAILED) throw std::bad_alloc();
  return block;
}

void free_own_pages(void* block, size_t bytes) {
  const size_t length = mapped_length(bytes);
  {
    auto& kept = kept_pages();
    std::lock_guard<std::mutex> lock(kept.mutex);
    if (kept.blocks.size() < kKeptBlocks && kept.bytes + length <= kKeptBytes) {
      kept.blocks.emplace_back(block, length);
      kept.bytes += length;
      return;
    }
  }
  munmap(block, length);
}

}  // namespace xt
