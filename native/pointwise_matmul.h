// 1x1 convolutions of training passes on the CPU as oneDNN matrix products. libtorch 1.13's
// convolution keeps its weights in PyTorch's layout and reorders them into oneDNN's blocked one on
// every call, forward and backward-data alike, and the weight gradient back out; for a 1x1
// convolution over a channels-last input, the input is already an [images x pixels, channels]
// matrix, and oneDNN's matmul reads the weights where they are. Forward, backward-data and
// backward-weights are each one product (Xception's middle-flow 728 -> 728 at 6x6, batch 8, fwd +
// bwd on 2 threads: 3.96 ms as libtorch's convolution runs it, 2.90 as products; docs/training.md).
// Same arithmetic up to float rounding; deterministic for a given thread count.
#pragma once

#include "torch_includes.h"

#include <optional>

namespace xt {

// conv(x) with its autograd as matrix products, when it applies: oneDNN built in and switched on,
// grad mode on, no CPU autocast, no summary recording; x a CPU float32 4-d tensor in channels-last
// layout (not merely an NCHW one whose 1x1 maps make it channels-last-contiguous too);
// conv 1x1, stride 1, no padding, dilation 1, one group, no bias, weights float32 and contiguous.
// nullopt otherwise (the caller runs the module).
std::optional<torch::Tensor> pointwise_matmul(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

// On by default where the addon has oneDNN; off, training passes run libtorch's convolutions (for
// comparisons and benchmarks). Read at every call.
void set_pointwise_matmul(bool enabled);
bool pointwise_matmul_enabled();
// How many 1x1 convolutions have run as products in this process (tests check that they do).
int64_t pointwise_matmul_calls();

// conv(x) through pointwise_matmul where it applies, through the holder otherwise.
template <class ConvHolder>
torch::Tensor training_conv(ConvHolder& conv, const torch::Tensor& x) {
  if (auto y = pointwise_matmul(*conv, x)) return *y;
  return conv(x);
}

}  // namespace xt
