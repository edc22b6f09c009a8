#include "cuda_support.h"

#include "torch_includes.h"

#ifdef XT_WITH_CUDA
// libtorch_cuda's own accessor, rather than cudaGetDeviceProperties: the addon then needs no
// symbol of the CUDA runtime and links none (PyTorch loads its own libcudart).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace xt {

#ifdef XT_WITH_CUDA

bool built_with_cuda() { return true; }

std::optional<CudaDeviceInfo> cuda_device_info(int device) {
  if (!torch::cuda::is_available()) return std::nullopt;
  if (device < 0 || device >= static_cast<int>(torch::cuda::device_count())) return std::nullopt;
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device);
  if (prop == nullptr) return std::nullopt;
  CudaDeviceInfo info;
  info.name = prop->name;
  info.total_memory = static_cast<int64_t>(prop->totalGlobalMem);
  info.major = prop->major;
  info.minor = prop->minor;
  return info;
}

std::optional<CudaMemoryStats> cuda_memory_stats(int device) {
  if (!torch::cuda::is_available()) return std::nullopt;
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  // Entry 0 of each stat array is the aggregate over pool kinds.
  CudaMemoryStats out;
  out.allocated = stats.allocated_bytes[0].current;
  out.peak_allocated = stats.allocated_bytes[0].peak;
  out.reserved = stats.reserved_bytes[0].current;
  out.peak_reserved = stats.reserved_bytes[0].peak;
  return out;
}

void reset_cuda_peak_memory(int device) {
  if (torch::cuda::is_available())
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
}

#else

bool built_with_cuda() { return false; }
std::optional<CudaDeviceInfo> cuda_device_info(int) { return std::nullopt; }
std::optional<CudaMemoryStats> cuda_memory_stats(int) { return std::nullopt; }
void reset_cuda_peak_memory(int) {}

#endif

}  // namespace xt
