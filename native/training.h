// The training loop, native end to end: the batch loop (sample -> augment -> forward under
// autocast -> loss -> scaled backward -> unscale -> step or skip -> update) that runs on a worker
// thread, evaluation, and timed steps for benchmarks. Its parts have files of their own:
// autocast.h (AutocastGuard), grad_scaler.h (GradScaler), adam.h (Adam and AdamW).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "adam.h"
#include "autocast.h"
#include "data.h"
#include "distributed_group.h"
#include "distributed_sampler.h"
#include "fed_batches.h"
#include "grad_scaler.h"
#include "gradient_reducer.h"
#include "network.h"

namespace xt {

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
  // Batches between reads of the device-side metrics; the caller chooses (lib/trainer-options.ts:
  // every batch on the CPU, every 10th on CUDA), 1 here reads every batch.
  int64_t progress_every = 1;
  // Linear probing: only the classifier (Network::classifier_modules()) trains; the backbone's
  // parameters get no gradient and its BatchNorm layers keep their running statistics (eval mode).
  bool freeze_backbone = false;
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
  // Data-parallel runs: seconds spent waiting for gradient all-reduces that backward did not hide.
  double exposed_communication_seconds = 0;
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

// Timed steps on one fixed random batch (TrainingSession::benchmark).
struct BenchmarkOptions {
  int64_t image_size = 96;
  int64_t warmup = 2;  // untimed steps first
  int64_t steps = 5;   // timed steps
  bool train = true;   // training steps; false: eval forward passes
};

struct BenchmarkResult {
  double seconds = 0;  // the timed steps, device work included
  int64_t images = 0;
  std::optional<int64_t> peak_memory;  // CUDA: the caching allocator's peak over warm-up and timed steps
};

class TrainingSession : public LiveCount<TrainingSession> {
 public:
  // With a process group of more than one rank, training is data-parallel with
  // DistributedDataParallel's semantics: rank 0's parameters and buffers are broadcast now and its
  // buffers before each training forward; each rank trains on its shard of every epoch
  // (distributed_sampler.h) with config.batch_size / world_size images per batch; gradients are
  // averaged (gradient_reducer.h) before unscaling, so every rank takes or skips the same step;
  // metrics, the stop request and evaluation are all-reduced.
  TrainingSession(std::shared_ptr<Network> net, const TrainConfig& config, torch::Device device, int64_t train_size,
                  std::shared_ptr<DistributedGroup> group = nullptr);
  // Gives a frozen backbone its gradients back (the model outlives the session).
  ~TrainingSession();
  TrainingSession(const TrainingSession&) = delete;
  TrainingSession& operator=(const TrainingSession&) = delete;

  // Trains from `position` to the end of its epoch, or until `stop` becomes true (checked after
  // each batch; data-parallel: when the metrics are read, and on any rank stops every rank). Every shuffle, crop, flip
  // and dropout mask derives from (seed, epoch, batch), so the same position gives the same result whether or not the
  // run was interrupted.
  EpochResult train_epoch(const ImageStore& data, const std::function<void(const TrainProgress&)>& progress,
                          const std::atomic<bool>& stop);
  // The same loop over batches prepared elsewhere (an image folder decoded in JavaScript): batch b
  // of the epoch is popped from `fed` (phase = the epoch) and must hold this rank's images of it,
  // augmented; its pixels are normalised here. An empty batch is an error.
  EpochResult train_epoch(FedBatches& fed, const std::function<void(const TrainProgress&)>& progress,
                          const std::atomic<bool>& stop);
  // Data-parallel: each rank evaluates every world_size-th image (rank 0's BatchNorm statistics
  // first broadcast), and the sums are all-reduced: every rank returns the whole split's result.
  EvalResult evaluate(const ImageStore& data, int64_t batch_size, int64_t num_classes);
  // Evaluation over fed batches (phase FedBatches::kEvaluation, numbered from 0): this rank's
  // images of the split (rank, rank + world, ...) in batches of `batch_size`, as above. A batch may
  // hold fewer images (files left out) or none; `images` counts those evaluated, on all ranks.
  EvalResult evaluate(FedBatches& fed, int64_t batch_size, int64_t num_classes);

  struct StepOutput {
    torch::Tensor loss;    // 0-dim, the unscaled training loss (with the aux term)
    torch::Tensor logits;  // [B, classes]
  };
  // One optimisation step on a ready batch: forward under autocast, loss, scaled backward,
  // unscale, Adam step (skipped on overflow), scale update. Queues work without host syncs where
  // the device allows it (CUDA with fused Adam).
  StepOutput train_step(const torch::Tensor& x, const torch::Tensor& y, double lr);

  // Times `options.steps` steps after `options.warmup` untimed ones, on one random batch of the
  // configured batch size: train_step itself (so the weights change), or eval forward passes under
  // autocast. For side-by-side comparisons with PyTorch (bench/); the model's train/eval mode is
  // restored afterwards.
  BenchmarkResult benchmark(const BenchmarkOptions& options);

  int64_t batches_per_epoch() const;
  EpochPosition& position() { return position_; }
  Adam& optimizer() { return optimizer_; }
  GradScaler& scaler() { return scaler_; }
  double lr_at(int64_t global_step) const;
  // This rank's training images of an epoch, in order (the whole permutation with one process).
  torch::Tensor epoch_indices(int64_t epoch) const;
  const std::shared_ptr<DistributedGroup>& group() const { return group_; }

 private:
  bool data_parallel() const { return group_ && group_->world_size() > 1; }
  // Batch b of an epoch whose (this rank's) image order is `order`: the augmented images and labels;
  // seeds the default generator for the dropout masks of its step.
  std::pair<torch::Tensor, torch::Tensor> training_batch(const ImageStore& data, const torch::Tensor& order,
                                                         int64_t epoch, int64_t b);
  // Batch b of `epoch` (augmented images, labels on the device) from wherever the epoch's images come.
  using BatchSource = std::function<std::pair<torch::Tensor, torch::Tensor>(int64_t epoch, int64_t b)>;
  EpochResult run_epoch(const BatchSource& batch_of, const std::function<void(const TrainProgress&)>& progress,
                        const std::atomic<bool>& stop);
  // Evaluation batch i of this rank (images, labels on the device; the images may be empty).
  using EvalSource = std::function<std::pair<torch::Tensor, torch::Tensor>(int64_t i, int64_t begin, int64_t size)>;
  EvalResult run_evaluation(int64_t split_size, int64_t batch_size, int64_t num_classes, const EvalSource& batch_of);
  // The dropout seed of batch b of `epoch`, on this rank (so resumed runs repeat their masks).
  void seed_dropout(int64_t epoch, int64_t b) const;
  void start_data_parallel();
  void broadcast_buffers();
  std::shared_ptr<Network> net_;
  TrainConfig config_;
  torch::Device device_;
  int64_t train_size_;
  std::vector<torch::Tensor> frozen_;  // the backbone's parameters while frozen (before optimizer_: it skips them)
  Adam optimizer_;
  GradScaler scaler_;
  EpochPosition position_;
  std::shared_ptr<DistributedGroup> group_;
  ShardPlan plan_;
  std::unique_ptr<GradientReducer> reducer_;
  bool started_ = false;  // rank 0's parameters and buffers broadcast
};

}  // namespace xt
