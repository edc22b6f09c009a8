// One inference convolution run directly on oneDNN, the library libtorch's own CPU convolutions
// use, for folded eval passes (native/folded_inference.h). What it saves over at::conv2d, measured
// with ONEDNN_VERBOSE on both models (96x96, batch 8, 2 threads): libtorch 1.13 reorders every
// convolution's weights into oneDNN's blocked layout on every call (18 of 62 ms a pass for
// Inception V3, 17 of 107 for Xception) and builds a primitive-cache key per call. Here the
// weights are reordered once, the primitive is compiled once per input shape, and a following
// ReLU runs inside the convolution as a post-op. Activations stay ordinary channels-last tensors,
// so every other layer still runs in libtorch.
#pragma once

#include "torch_includes.h"

#include <memory>
#include <optional>
#include <string>

namespace xt {

class OnednnConv {
 public:
  // A convolution of these (already folded) weights and bias (undefined: none), or nullptr where
  // this build has no oneDNN or the weights are not CPU float32.
  static std::shared_ptr<const OnednnConv> create(const torch::Tensor& weight, const torch::Tensor& bias,
                                                  at::IntArrayRef stride, at::IntArrayRef padding,
                                                  at::IntArrayRef dilation, int64_t groups);
  ~OnednnConv();

  // conv(x), followed by ReLU when `relu`: nothing when x is not a 4-D CPU float32 tensor or oneDNN
  // declines the shape, and the caller runs libtorch's convolution instead.
  std::optional<torch::Tensor> run(const torch::Tensor& x, bool relu) const;

  struct Impl;

 private:
  explicit OnednnConv(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "2.6.3" where the addon was built with oneDNN, "" otherwise.
std::string onednn_version();

// Folded passes use oneDNN directly while this is on (the default where it was built); off, they
// run libtorch's convolutions, for comparisons and benchmarks. Read at every convolution.
void set_onednn_inference(bool enabled);
bool onednn_inference_enabled();

}  // namespace xt
