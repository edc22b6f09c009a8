// Pooling layers of folded eval passes on oneDNN, as their convolutions (native/onednn_conv.h). What
// it saves over libtorch 1.13's CPU kernels: max_pool2d computes and writes an int64 index for every
// output (it is max_pool2d_with_indices with the indices dropped), three times the output's bytes,
// and both poolings ran as ~4% of an Inception V3 pass's CPU samples (96x96, batch 8, 2 threads).
// oneDNN's inference pooling writes the output only.
#pragma once

#include "torch_includes.h"

#include <optional>

namespace xt {

enum class PoolKind {
  Max,
  Average,  // padding counted in the divisor: PyTorch's count_include_pad=True, its default
};

// The pooling of x on oneDNN inside a folded eval pass (floor-mode output sizes, no dilation); nothing
// outside one, where oneDNN is off or absent, for inputs that are not 4-D CPU float32, under
// autocast, or where oneDNN declines the shape: the caller then runs libtorch's.
std::optional<torch::Tensor> folded_pool(const torch::Tensor& x, PoolKind kind, at::IntArrayRef kernel,
                                         at::IntArrayRef stride, at::IntArrayRef padding);

// pool(x) for a MaxPool2d holder (plain or Stage<...>): on oneDNN in folded eval passes where its options
// allow (no ceil mode, no dilation), through the holder otherwise.
template <class MaxPoolHolder>
torch::Tensor max_pool(MaxPoolHolder& pool, const torch::Tensor& x) {
  const auto& o = pool->options;
  const bool plain = !o.ceil_mode() && (*o.dilation())[0] == 1 && (*o.dilation())[1] == 1;
  if (plain) {
    if (auto y = folded_pool(x, PoolKind::Max, *o.kernel_size(), *o.stride(), *o.padding())) return *y;
  }
  return pool(x);
}

}  // namespace xt
