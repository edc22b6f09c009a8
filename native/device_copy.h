// Host-to-device copies that do not stall the host: a plain `.to(cuda)` from pageable memory
// synchronises with the GPU's queue, so a training loop that copies indices or crop offsets each
// batch would wait for the previous step to finish before it could queue the next one.
#pragma once

#include "torch_includes.h"

namespace xt {

// `tensor` on `device`. CPU -> CUDA copies go through pinned memory without blocking (the caching
// host allocator keeps the staging buffer alive until the copy has run); anything else is a plain copy.
inline torch::Tensor to_device(const torch::Tensor& tensor, const torch::Device& device) {
  if (device.is_cuda() && tensor.device().is_cpu()) return tensor.pin_memory().to(device, /*non_blocking=*/true);
  return tensor.to(device);
}

inline torch::Tensor to_device(const torch::Tensor& tensor, const torch::Device& device, torch::ScalarType dtype) {
  return to_device(tensor.to(dtype), device);
}

}  // namespace xt
