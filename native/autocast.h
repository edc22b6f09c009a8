// Mixed precision's forward half: the AMP modes and a scoped guard that turns autocast on for one
// device, as Python's `with torch.autocast(device, dtype)`.
#pragma once

#include "torch_includes.h"

namespace xt {

enum class AmpMode { Off, FP16, BF16 };

// Mirrors Python's `with torch.autocast(device, dtype)`: enables autocast for `device` on this
// thread (autocast state is thread-local) and restores the previous state on destruction.
// Whether autocast is on for the CPU on this thread (code that calls oneDNN directly must then
// leave the work to libtorch, which casts).
bool cpu_autocast_enabled();

class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, AmpMode mode);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_;
  bool active_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace xt
