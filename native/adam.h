// The optimizer: Adam and AdamW with torch.optim's update, their state as plain named tensors (for
// checkpoints), and torch.optim's fused CUDA kernels where libtorch has them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "torch_includes.h"

namespace xt {

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW
};

// Adam / AdamW with the update of torch.optim. Written here rather than using torch::optim::Adam
// so that its state is plain named tensors (checkpoints). On CUDA with libtorch >= 2.0 it runs
// torch.optim's fused kernels (at::_fused_adam_ / _fused_adamw_: a few launches for all
// parameters instead of several per tensor, and an overflow skip decided on the device); elsewhere
// the single-tensor update of torch.optim, as one pass over each CPU float32 parameter
// (adam_cpu.h) or as ATen operations elsewhere.
class Adam {
 public:
  Adam(std::vector<std::pair<std::string, torch::Tensor>> params, const AdamOptions& options, bool allow_fused = true);
  // One step at learning rate `lr` from the parameters' .grad(); parameters without a gradient
  // are left alone (as torch.optim does). With `found_inf` (a GradScaler's flag) the step is
  // skipped when it is non-zero: on the device for the fused kernels, after a host read otherwise.
  void step(double lr, const torch::Tensor& found_inf = {});

  const AdamOptions& options() const { return options_; }
  bool fused() const { return fused_; }
  // Steps taken (skipped ones not counted). Reads the device counter on the fused path.
  int64_t steps() const;
  // exp_avg.<name>, exp_avg_sq.<name> for every parameter.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps);

 private:
  AdamOptions options_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<torch::Tensor> exp_avg_;
  std::vector<torch::Tensor> exp_avg_sq_;
  int64_t steps_ = 0;
  bool fused_ = false;
  torch::Tensor device_steps_;  // fused path: float32 0-dim step count on the device
  torch::Tensor no_overflow_;   // fused path: a zero overflow flag for steps without a GradScaler

  void step_single_tensor(double lr);
  bool step_fused(double lr, const torch::Tensor& found_inf);
};

}  // namespace xt
