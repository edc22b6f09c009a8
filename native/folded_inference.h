// Eval-mode inference with each BatchNorm folded into the convolution before it. In eval mode
// BatchNorm is an affine map per channel, so with s = gamma / sqrt(running_var + eps)
//   bn(conv(x; W, b)) = conv(x; W * s, beta + (b - running_mean) * s)
// and one pass over the activations (the BatchNorm) disappears. The folded weights are a copy,
// made on the first folded forward after any source tensor changed, in the memory format folded
// passes run in; the modules' own parameters and buffers (state dict, checkpoints, training) are
// never touched.
#pragma once

#include "torch_includes.h"

#include "pointwise_matmul.h"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace xt {

struct FoldedTable;  // the folded convolutions (folded_inference.cpp)

class FoldedInference {
 public:
  // Declares that `bn` directly follows `conv` in the forward pass. Throws std::invalid_argument
  // for pairs that cannot be folded (a BatchNorm without running statistics, a padding mode
  // other than zeros, channel counts that do not match).
  void add(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn);
  // Declares a convolution with no BatchNorm after it that folded passes run through run_plain(),
  // so that it too runs on oneDNN with its weights reordered once.
  void add_plain(const torch::nn::Conv2d& conv);
  // The declared conv -> BatchNorm pairs (add_plain() convolutions not counted).
  size_t size() const;

  // On by default. Off, eval passes run the modules as they are (for comparisons); the copy is
  // dropped.
  void set_enabled(bool enabled);
  bool enabled() const { return enabled_.load(); }

  // Drops the folded copy (and its memory). Needed where a source changes without its version
  // counter moving: a training-mode forward updates BatchNorm's running statistics inside the
  // kernel. Parameter updates (optimizer steps, loading weights) and moves are seen without it.
  void invalidate();

  // While a Scope lives, conv_bn() on this thread runs the folded convolutions. Entering it
  // recomputes the copy when it is missing or any source tensor changed since it was made.
  class Scope {
   public:
    explicit Scope(FoldedInference& folding);
    // The same folded copy as `outer` (a Scope of another thread, alive meanwhile), without checking
    // the weights again: for the helpers of a split pass (native/split_pass.h).
    static Scope sharing(const Scope& outer) { return Scope(outer.table_); }
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    explicit Scope(std::shared_ptr<const FoldedTable> table);
    std::shared_ptr<const FoldedTable> table_;  // kept alive here if another thread refreshes the copy
    const FoldedTable* previous_;
  };

  // How many times the folded copy has been computed (tests check that it is refreshed).
  int64_t refreshes() const;

 private:
  struct Pair {
    torch::nn::Conv2d conv;
    torch::nn::BatchNorm2d bn;  // empty for add_plain()
  };
  // Identity and version of a source tensor: a change of either means the copy is stale.
  struct Stamp {
    const void* impl;
    const void* data;
    int64_t version;
    bool operator==(const Stamp& o) const { return impl == o.impl && data == o.data && version == o.version; }
  };

  std::vector<Stamp> stamps() const;
  std::shared_ptr<const FoldedTable> current();

  std::vector<Pair> pairs_;
  std::atomic<bool> enabled_{true};
  mutable std::mutex mutex_;
  std::shared_ptr<const FoldedTable> table_;  // null when stale
  std::vector<Stamp> table_stamps_;
  int64_t refreshes_ = 0;
};

// The memory format folded passes run in for an input like `x`: channels-last for 4-D tensors on
// the CPU, where libtorch 1.13's oneDNN convolutions take 20-30% less time over these models than
// on NCHW (measured at 96x96, batch 8, 2 threads); the tensor's own format elsewhere.
at::MemoryFormat folded_memory_format(const torch::Tensor& x);

// Whether this thread is inside a FoldedInference::Scope.
bool in_folded_pass();

// Inside a FoldedInference::Scope: the folded convolution of input(), with ReLU fused after it when
// `relu` (std::logic_error when the pair conv -> bn was never declared). The convolution runs on
// oneDNN (native/onednn_conv.h) where it can, else in libtorch. Outside a Scope: nothing, and the
// caller runs the modules.
std::optional<torch::Tensor> run_folded(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn,
                                        const std::function<torch::Tensor()>& input, bool relu = false);

// The same for a convolution declared with add_plain().
std::optional<torch::Tensor> run_plain(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

// bn(conv(x)), as one folded convolution in folded eval passes. `conv` and `bn` are module holders
// (plain or Stage<...>), called as holders otherwise so that summaries see them (a 1x1 `conv` of a
// training pass runs as matrix products, native/pointwise_matmul.h).
template <class ConvHolder, class BatchNormHolder>
torch::Tensor conv_bn(ConvHolder& conv, BatchNormHolder& bn, const torch::Tensor& x) {
  if (auto folded = run_folded(*conv, *bn, [&] { return x; })) return *folded;
  return bn(training_conv(conv, x));
}

// conv(x) for a convolution declared with add_plain(): on oneDNN in folded eval passes, through
// training_conv() otherwise.
template <class ConvHolder>
torch::Tensor conv_plain(ConvHolder& conv, const torch::Tensor& x) {
  if (auto folded = run_plain(*conv, x)) return *folded;
  return training_conv(conv, x);
}

// relu(bn(conv(x))), the ReLU fused into the folded convolution in folded eval passes. `relu` is
// the module (or any callable) run otherwise.
template <class ConvHolder, class BatchNormHolder, class ReLU>
torch::Tensor conv_bn_relu(ConvHolder& conv, BatchNormHolder& bn, const torch::Tensor& x, ReLU&& relu) {
  if (auto folded = run_folded(
          *conv, *bn, [&] { return x; }, /*relu=*/true))
    return *folded;
  return relu(bn(training_conv(conv, x)));
}

}  // namespace xt
