// torch.amp.GradScaler in C++: dynamic loss scaling for fp16 training (scale the loss, unscale the
// gradients while detecting inf/NaN, skip the step on overflow, grow or back off the scale).
// The TypeScript side of the same concept is lib/grad-scaler.ts.
#pragma once

#include <cstdint>
#include <vector>

#include "torch_includes.h"

namespace xt {

// torch.amp.GradScaler's constructor arguments, with its defaults.
struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;
};

// torch.amp.GradScaler: scale the loss, unscale the gradients while detecting inf/NaN, skip the
// optimizer step on overflow, then grow or back off the scale. The state lives in device tensors
// (scale float32 [1], growth tracker int32 [1]) as in PyTorch. On CUDA (and on libtorch >= 2.3
// everywhere) the fused ATen kernels do the work; older CPU builds use equivalent tensor ops.
class GradScaler {
 public:
  GradScaler(const GradScalerOptions& options, torch::Device device);

  bool enabled() const { return options_.enabled; }
  torch::Tensor scale(const torch::Tensor& loss) const;
  // grads *= 1 / scale (reciprocal computed in double, applied in float); records non-finite values.
  void unscale(const std::vector<torch::Tensor>& grads);
  // Whether the last unscale saw an inf or NaN (reads the device flag: a host sync).
  bool found_inf() const;
  // The device flag itself (float32 [1], non-zero after an overflow), for an optimizer that skips
  // on the device without a sync.
  const torch::Tensor& found_inf_tensor() const { return found_inf_; }
  // Grow or back off the scale from the last unscale's result, and clear the flag. On the fused
  // path this stays on the device (no host sync).
  void update();

  double scale_value() const;
  int64_t growth_tracker() const;
  int64_t skipped_steps() const;
  void set_state(double scale, int64_t growth_tracker, int64_t skipped_steps);
  const GradScalerOptions& options() const { return options_; }

 private:
  GradScalerOptions options_;
  torch::Tensor scale_;
  torch::Tensor growth_tracker_;
  torch::Tensor found_inf_;
  torch::Tensor skipped_steps_;  // float32 [1] on the device, counted without a host sync
};

}  // namespace xt
