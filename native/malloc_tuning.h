// glibc malloc settings for tensor workloads. Left to itself, glibc returns the top of a heap to the
// OS once more than a threshold of it is free, and its dynamic thresholds end up doing that about
// once a pass: an Inception V3 eval pass (96x96, batch 8) faulted in 1,230 fresh pages (5 MB) every
// time, and 5% of the process's CPU samples were the kernel clearing and mapping them; an Xception
// training step, 7,500. With fixed thresholds the freed memory stays in the heap for the next pass
// (kernel share 0.8%, 217 faults a pass: forward()'s input copy), and a top pad keeps compute
// threads' arenas from unmapping whole heaps between passes (malloc_tuning.cpp). Memory is handed back at the
// points where a user expects it to shrink: at the end of each training epoch, and when a network
// or a training session is freed (release_free_memory()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace xt {

struct MallocSettings {
  // "tuned": set here; "environment": the user set glibc's thresholds (MALLOC_*_ or GLIBC_TUNABLES)
  // and they are kept; "default": XCEPTION_TORCH_MALLOC=default asked for glibc's own behaviour;
  // "unavailable": not glibc.
  std::string mode;
  int64_t mmap_threshold = 0;  // bytes; 0 where not set here
  int64_t trim_threshold = 0;
  int64_t top_pad = 0;
};

// Applies the settings once, when the addon loads (later calls return the same result).
const MallocSettings& tune_malloc();

// Returns free heap memory to the OS (glibc's malloc_trim) where tune_malloc() kept it, and the
// blocks allocate_own_pages() keeps for reuse.
void release_free_memory();

// A block of `bytes` on pages of its own (mmap), outside every malloc arena, for copies made on the
// JS thread (native/js_data_copy.h). That thread's arena is shared with Node and V8, whose small
// allocations soon split the hole a freed copy leaves, so each new copy went to the top of the
// heap: forward()'s copy of its input made RSS grow by the input's size on every call, without
// bound (0.86 MB a call for a batch of 8 at 96x96), under glibc's own thresholds as under
// tune_malloc()'s. A few freed blocks (at most 4, 64 MiB) are kept for the next copy of the same
// size, which saves it a page fault per page. Throws std::bad_alloc.
void* allocate_own_pages(size_t bytes);
void free_own_pages(void* block, size_t bytes);

}  // namespace xt
