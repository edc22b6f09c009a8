// The common face of every model the addon knows: a torch::nn::Module with a forward that can
// report each top-level stage's output (for `summary`), its input constraints, and PyTorch-ordered
// state-dict access.
#pragma once

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

class Network : public torch::nn::Module {
 public:
  explicit Network(const std::string& name) : torch::nn::Module(name) {}

  virtual NetworkOutput forward_all(torch::Tensor x, const StageRecorder* record = nullptr) = 0;
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
torch::Tensor counted(torch::nn::Linear& fc, const torch::Tensor& x);

// Records a stage output under `name` when a recorder is given; returns the output unchanged.
inline torch::Tensor record_stage(const StageRecorder* record, const std::string& name, torch::Tensor x) {
  if (record) (*record)(name, x);
  return x;
}

}  // namespace xt
