// Copies of JS typed-array data that outlive the call, made on the JS thread for work that runs on
// the compute thread (forward()'s input, a fed training batch). They go on pages of their own
// (allocate_own_pages, native/malloc_tuning.h) rather than the JS thread's malloc heap, where each
// freed copy left a hole that Node's and V8's small allocations split, so that RSS grew by a copy's
// size on every call.
#pragma once

#include <cstring>

#include "malloc_tuning.h"
#include "torch_includes.h"

namespace xt {

inline torch::Tensor copy_of_js_data(const void* data, at::IntArrayRef shape, at::ScalarType type) {
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(type);
  void* copy = allocate_own_pages(bytes);
  if (bytes) std::memcpy(copy, data, bytes);
  return torch::from_blob(
      copy, shape, [bytes](void* block) { free_own_pages(block, bytes); }, torch::TensorOptions().dtype(type));
}

}  // namespace xt
