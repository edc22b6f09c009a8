// The common face of every model the addon knows: a torch::nn::Module with a forward that can
// report each top-level stage's output (for `summary`), its input constraints, and PyTorch-ordered
// state-dict access.
#pragma once

#include "folded_inference.h"
#include "live_objects.h"
#include "torch_includes.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace xt {

// Called after each top-level child runs, with the child's registered name and its output.
using StageRecorder = std::function<void(const std::string& name, const torch::Tensor& output)>;

struct NetworkOutput {
  torch::Tensor logits;
  torch::Tensor aux;  // undefined unless the model has an auxiliary head and is training
};

class Network : public torch::nn::Module, public LiveCount<Network> {
 public:
  explicit Network(const std::string& name) : torch::nn::Module(name) {}

  // Runs the model. An eval-mode pass with gradients off (no_grad or inference mode) and no
  // recorder runs each conv -> BatchNorm pair as one folded convolution, channels-last on the CPU
  // (folded_inference.h); a training-mode pass runs the modules as they are and marks the folded
  // copy stale.
  NetworkOutput forward_all(torch::Tensor x, const StageRecorder* record = nullptr);
  // The public model name ('xception' | 'inception_v3') and the smallest spatial size it accepts.
  virtual std::string model_name() const = 0;
  virtual std::string display_name() const = 0;
  virtual int64_t min_input_size() const = 0;
  // Stages that run in training mode only (shown by summaries, left out of their eval totals).
  virtual std::vector<std::string> training_only_stages() const { return {}; }

  // Throws std::invalid_argument naming the expected shape when `shape` is not [N, 3, H, W]
  // with H, W >= min_input_size().
  void check_input_shape(const std::vector<int64_t>& shape) const;

  // Parameters and buffers in the order PyTorch's state_dict() lists them.
  std::vector<std::pair<std::string, torch::Tensor>> state_dict() const;
  int64_t parameter_count() const;

  // The conv -> BatchNorm pairs that eval passes fold (models declare theirs when built).
  FoldedInference& folding() { return folding_; }

 protected:
  // The model's forward pass: conv -> BatchNorm pairs declared to folding() must run through
  // conv_bn() so that eval passes can fold them.
  virtual NetworkOutput forward_impl(torch::Tensor x, const StageRecorder* record) = 0;

 private:
  FoldedInference folding_;
};

// Multiply-accumulates of the convolutions and linear layers run on this thread, counted while a
// MacCounter is active (summaries and comparisons; training never turns it on).
class MacCounter {
 public:
  MacCounter();
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  int64_t total() const { return total_; }
  static void add(int64_t macs);

 private:
  MacCounter* previous_;
  int64_t total_ = 0;
};

// conv(x) / fc(x), counting their multiply-accumulates when a MacCounter is active.
torch::Tensor counted(torch::nn::Conv2d& conv, const torch::Tensor& x);
// Counts the multiply-accumulates of a convolution with these options that produced `output`.
void count_conv_macs(const torch::nn::detail::ConvNdOptions<2>& options, const torch::Tensor& output);
torch::Tensor counted(torch::nn::Linear& fc, const torch::Tensor& x);

// Records a stage output under `name` when a recorder is given; returns the output unchanged.
inline torch::Tensor record_stage(const StageRecorder* record, const std::string& name, torch::Tensor x) {
  if (record) (*record)(name, x);
  return x;
}

}  // namespace xt
