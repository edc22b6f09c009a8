// The common face of every model the addon knows: a torch::nn::Module with one forward pass (BatchNorm
// folded in eval), a summary of its stages, its input constraints, and PyTorch-ordered state-dict
// access.
#pragma once

#include "folded_inference.h"
#include "live_objects.h"
#include "stage.h"
#include "torch_includes.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace xt {

struct NetworkOutput {
  torch::Tensor logits;
  torch::Tensor aux;  // undefined unless the model has an auxiliary head and is training
};

// A top-level stage as summaries show it (torchinfo's depth-1 rows).
struct StageSummary {
  std::string name, type;
  std::vector<int64_t> output_shape;
  int64_t parameters = 0;
  int64_t macs = 0;
  bool training_only = false;  // runs in training only (Inception's aux head): left out of eval_macs
};

struct NetworkSummary {
  std::vector<StageSummary> stages;
  int64_t parameters = 0;  // trainable
  int64_t eval_macs = 0;   // one image, eval mode: the sum over the stages that run in eval
};

class Network : public torch::nn::Module, public LiveCount<Network> {
 public:
  explicit Network(const std::string& name) : torch::nn::Module(name) {}

  // Runs the model. An eval-mode pass with gradients off (no_grad or inference mode) runs each
  // conv -> BatchNorm pair as one folded convolution, channels-last on the CPU
  // (folded_inference.h); a training-mode pass runs the modules as they are and marks the folded
  // copy stale.
  NetworkOutput forward_all(torch::Tensor x);
  // The public model name ('xception' | 'inception_v3') and the smallest spatial size it accepts.
  virtual std::string model_name() const = 0;
  virtual std::string display_name() const = 0;
  virtual int64_t min_input_size() const = 0;
  // Stages that run in training mode only (shown by summaries, left out of their eval totals).
  virtual std::vector<std::string> training_only_stages() const { return {}; }
  // The classifier modules (state-dict prefixes): what a new number of classes replaces, and what
  // training with a frozen backbone trains.
  virtual std::vector<std::string> classifier_modules() const = 0;

  // Throws std::invalid_argument naming the expected shape when `shape` is not [N, 3, H, W]
  // with H, W >= min_input_size().
  void check_input_shape(const std::vector<int64_t>& shape) const;

  // Parameters and buffers in the order PyTorch's state_dict() lists them.
  std::vector<std::pair<std::string, torch::Tensor>> state_dict() const;
  int64_t parameter_count() const;

  // One forward pass of a zero image of `image_size` in eval mode, on the model's device and the
  // calling thread, recording each Stage's output shape, parameters and multiply-accumulates
  // (network_summary.cpp). The training mode is restored afterwards.
  NetworkSummary summarize(int64_t image_size);

  // The conv -> BatchNorm pairs that eval passes fold (models declare theirs when built).
  FoldedInference& folding() { return folding_; }

 protected:
  // The model's forward pass: conv -> BatchNorm pairs declared to folding() must run through
  // conv_bn() so that eval passes can fold them; top-level children declared as Stage<...> show
  // in summaries.
  virtual NetworkOutput forward_impl(torch::Tensor x) = 0;

 private:
  FoldedInference folding_;
};

}  // namespace xt
