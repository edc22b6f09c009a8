// Training machinery, native end to end: autocast, a GradScaler with torch.amp's semantics, Adam
// and AdamW, and the batch loop (sample -> augment -> forward under autocast -> loss -> scaled
// backward -> unscale -> step or skip -> update) that runs on a worker thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data.h"
#include "network.h"

namespace xt {

enum class AmpMode { Off, FP16, BF16 };

// Mirrors Python's `with torch.autocast(device, dtype)`: enables autocast for `device` on this
// thread (autocast state is thread-local) and restores the previous state on destruction.
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, AmpMode mode);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_;
  bool active_ = false;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

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
// the single-tensor update of torch.optim.
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

struct TrainConfig {
  int64_t batch_size = 128;
  int64_t epochs = 10;
  AdamOptions optimizer;
  bool cosine_schedule = false;
  double label_smoothing = 0.0;
  double aux_loss_weight = 0.4;
  AmpMode amp = AmpMode::Off;
  GradScalerOptions scaler;
  uint64_t seed = 0;
  Preprocessing preprocessing;
  bool channels_last = false;
  bool cudnn_benchmark = true;  // CUDA: time the convolution algorithms once per shape, keep the fastest
  // CUDA, libtorch >= 2.0: torch.optim's fused Adam kernels; off falls back to the per-tensor
  // path without a rebuild.
  bool fused_adam = true;
  int64_t progress_every = 5;  // batches between reads of the device-side metrics
};

struct TrainProgress {
  int64_t epoch = 0, batch = 0, batches = 0, images = 0;
  double loss = 0, accuracy = 0, seconds = 0, lr = 0, scale = 0;
};

struct EpochResult {
  bool completed = false;  // false when stopped before the epoch's last batch
  int64_t images = 0, batches = 0, skipped_steps = 0;
  double loss = 0, accuracy = 0, seconds = 0, lr = 0, scale = 0;
  bool fused_adam = false;  // whether the optimizer ran the fused kernels
  // Without a GradScaler: the first batch (0-based) whose loss was NaN or infinite, -1 if none.
  // The epoch stops there and is neither completed nor resumable from this state.
  int64_t diverged_batch = -1;
};

struct EvalResult {
  int64_t images = 0;
  double loss = 0, accuracy = 0;
  torch::Tensor confusion;  // int64 [classes, classes], rows = true class, columns = prediction
};

// Where a stopped epoch stands, so a resumed run continues it exactly.
struct EpochPosition {
  int64_t epoch = 0;       // the epoch in progress (0-based)
  int64_t next_batch = 0;  // first batch not yet trained
  double loss_sum = 0;     // sums over the batches already trained
  int64_t correct = 0, seen = 0;
  // The device-side loss sum not yet added into loss_sum: restoring it keeps the order of the
  // floating-point additions, and so the epoch's loss, identical to an uninterrupted run.
  double pending_loss = 0;
  int64_t pending_correct = 0;
  double seconds = 0;
};

class TrainingSession : public LiveCount<TrainingSession> {
 public:
  TrainingSession(std::shared_ptr<Network> net, const TrainConfig& config, torch::Device device, int64_t train_size);

  // Trains from `position` to the end of its epoch, or until `stop` becomes true (checked after
  // each batch). Every shuffle, crop, flip and dropout mask derives from (seed, epoch, batch), so
  // the same position gives the same result whether or not the run was interrupted.
  EpochResult train_epoch(const ImageStore& data, const std::function<void(const TrainProgress&)>& progress,
                          const std::atomic<bool>& stop);
  EvalResult evaluate(const ImageStore& data, int64_t batch_size, int64_t num_classes);

  struct StepOutput {
    torch::Tensor loss;    // 0-dim, the unscaled training loss (with the aux term)
    torch::Tensor logits;  // [B, classes]
  };
  // One optimisation step on a ready batch: forward under autocast, loss, scaled backward,
  // unscale, Adam step (skipped on overflow), scale update. Queues work without host syncs where
  // the device allows it (CUDA with fused Adam).
  StepOutput train_step(const torch::Tensor& x, const torch::Tensor& y, double lr);

  int64_t batches_per_epoch() const;
  EpochPosition& position() { return position_; }
  Adam& optimizer() { return optimizer_; }
  GradScaler& scaler() { return scaler_; }
  double lr_at(int64_t global_step) const;

 private:
  std::shared_ptr<Network> net_;
  TrainConfig config_;
  torch::Device device_;
  int64_t train_size_;
  Adam optimizer_;
  GradScaler scaler_;
  EpochPosition position_;
};

}  // namespace xt
