// What only a CUDA build of libtorch can answer: the GPU's name and memory, and the caching allocator's peak memory
// (torch.cuda.max_memory_allocated). In a CPU build every function answers "not available" rather than failing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace xt {

struct CudaDeviceInfo {
  std::string name;
  int64_t total_memory = 0;  // bytes
  int major = 0, minor = 0;  // compute capability
};

struct CudaMemoryStats {
  int64_t allocated = 0, peak_allocated = 0;  // bytes held by tensors
  int64_t reserved = 0, peak_reserved = 0;    // bytes held by the caching allocator
};

// Whether this addon was compiled against a CUDA libtorch with the code below.
bool built_with_cuda();
std::optional<CudaDeviceInfo> cuda_device_info(int device);
std::optional<CudaMemoryStats> cuda_memory_stats(int device);
void reset_cuda_peak_memory(int device);

}  // namespace xt
