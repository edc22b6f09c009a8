#include "training.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "cuda_support.h"
#include "epoch_metrics.h"
#include "malloc_tuning.h"

namespace xt {
namespace F = torch::nn::functional;

namespace {

// A stream of independent seeds from (seed, epoch, batch): splitmix64 over their combination.
uint64_t mix_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) * 0xBF58476D1CE4E5B9ULL +
               static_cast<uint64_t>(batch + 1) * 0x94D049BB133111EBULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFULL;
}

// Turns off the gradients of every parameter outside the classifier modules; returns them.
std::vector<torch::Tensor> freeze_backbone(Network& net) {
  const auto classifier = net.classifier_modules();
  std::vector<torch::Tensor> frozen;
  for (const auto& p : net.named_parameters()) {
    const auto& name = p.key();
    const bool in_classifier = std::any_of(classifier.begin(), classifier.end(),
                                           [&](const std::string& m) { return name.rfind(m + ".", 0) == 0; });
    if (in_classifier || !p.value().requires_grad()) continue;
    p.value().set_requires_grad(false);
    frozen.push_back(p.value());
  }
  return frozen;
}

}  // namespace

TrainingSession::~TrainingSession() {
  for (auto& p : frozen_) p.set_requires_grad(true);
}

TrainingSession::TrainingSession(std::shared_ptr<Network> net, const TrainConfig& config, torch::Device device,
                                 int64_t train_size, std::shared_ptr<DistributedGroup> group)
    : net_(std::move(net)),
      config_(config),
      device_(device),
      train_size_(train_size),
      frozen_(config.freeze_backbone ? freeze_backbone(*net_) : std::vector<torch::Tensor>{}),
      optimizer_(
          [&] {
            if (config.channels_last) {
              // nn::Module::to has no memory-format overload: convert each 4-D parameter (before the
              // optimizer state is made like them).
              torch::NoGradGuard no_grad;
              for (auto& p : net_->parameters()) {
                if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
              }
            }
            std::vector<std::pair<std::string, torch::Tensor>> params;
            for (const auto& p : net_->named_parameters()) {
              if (p.value().requires_grad()) params.emplace_back(p.key(), p.value());
            }
            return params;
          }(),
          config.optimizer, config.fused_adam),
      scaler_(config.scaler, device),
      group_(std::move(group)) {
  if (config.batch_size < 1) throw std::invalid_argument("the batch size must be positive");
  if (config.epochs < 1) throw std::invalid_argument("the number of epochs must be positive");
  if (train_size < 2) throw std::invalid_argument("the training set needs at least 2 images");
  plan_.rank = group_ ? group_->rank() : 0;
  plan_.world_size = group_ ? group_->world_size() : 1;
  plan_.dataset_size = train_size;
  plan_.global_batch = config.batch_size;
  plan_.validate();
  config_.preprocessing.validate(1);
  if (config.amp == AmpMode::FP16 && device.is_cpu())
    throw std::invalid_argument("fp16 mixed precision needs CUDA; on the CPU use bf16 or off");
  // Fixed input shapes: let cuDNN pick the fastest convolution algorithms (process-wide, as
  // torch.backends.cudnn.benchmark).
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(config.cudnn_benchmark);
  if (data_parallel()) {
    std::vector<torch::Tensor> trained;
    for (const auto& p : net_->parameters()) {
      if (p.requires_grad()) trained.push_back(p);
    }
    reducer_ = std::make_unique<GradientReducer>(trained, group_);
  }
}

void TrainingSession::start_data_parallel() {
  if (!data_parallel() || started_) return;
  // As DistributedDataParallel's constructor: every rank starts from rank 0's weights and buffers
  // (here before the first epoch or evaluation, on the worker thread, after any resumed state).
  std::vector<torch::Tensor> state = net_->parameters();
  for (const auto& b : net_->buffers()) state.push_back(b);
  group_->broadcast(state);
  started_ = true;
}

void TrainingSession::broadcast_buffers() {
  if (!data_parallel()) return;
  group_->broadcast(net_->buffers());
}

torch::Tensor TrainingSession::epoch_indices(int64_t epoch) const {
  auto order_gen = at::detail::createCPUGenerator(mix_seed(config_.seed, epoch, -1));
  auto order = torch::randperm(train_size_, order_gen, torch::kLong);
  return shard_indices(order, plan_.rank, plan_.world_size);
}

int64_t TrainingSession::batches_per_epoch() const { return plan_.batches(); }

double TrainingSession::lr_at(int64_t global_step) const {
  if (!config_.cosine_schedule) return config_.optimizer.lr;
  const double total = static_cast<double>(config_.epochs * batches_per_epoch());
  return config_.optimizer.lr * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, global_step / total)));
}

std::pair<torch::Tensor, torch::Tensor> TrainingSession::training_batch(const ImageStore& data,
                                                                        const torch::Tensor& order, int64_t epoch,
                                                                        int64_t b) {
  const int64_t world = plan_.world_size, rank = plan_.rank;
  const int64_t begin = b * plan_.rank_batch();
  const int64_t size = plan_.rank_batch_size(b);
  auto indices = order.slice(0, begin, begin + size);
  // The crops and flips of the whole global batch, of which this rank takes its rows (those of
  // its images), so an image is augmented alike whatever the number of ranks.
  auto aug_gen = at::detail::createCPUGenerator(mix_seed(config_.seed, epoch, b));
  auto augmentation = data.sample_augmentation(size * world, config_.preprocessing, aug_gen);
  if (world > 1) {
    augmentation.offsets = augmentation.offsets.slice(0, rank, size * world, world);
    augmentation.flips = augmentation.flips.slice(0, rank, size * world, world);
  }
  auto x = data.train_batch(indices, config_.preprocessing, augmentation);
  if (config_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  return {x, data.labels(indices)};
}

void TrainingSession::seed_dropout(int64_t epoch, int64_t b) const {
  // Dropout masks come from the default generator: seed it per batch (and rank) for exact resumes.
  torch::manual_seed(
      mix_seed((config_.seed ^ 0x5bd1e995ULL) + static_cast<uint64_t>(plan_.rank) * 0x632BE59BD9B4E019ULL, epoch, b));
}

EpochResult TrainingSession::train_epoch(const ImageStore& data,
                                         const std::function<void(const TrainProgress&)>& progress,
                                         const std::atomic<bool>& stop) {
  torch::Tensor order;
  int64_t order_epoch = -1;
  return run_epoch(
      [&](int64_t epoch, int64_t b) {
        // The epoch's order of this rank's images.
        if (order_epoch != epoch) order = epoch_indices(order_epoch = epoch);
        return training_batch(data, order, epoch, b);
      },
      progress, stop);
}

EpochResult TrainingSession::train_epoch(FedBatches& fed, const std::function<void(const TrainProgress&)>& progress,
                                         const std::atomic<bool>& stop) {
  return run_epoch(
      [&](int64_t epoch, int64_t b) {
        auto batch = fed.pop(epoch, b);
        if (batch.images.size(0) == 0) {
          throw std::runtime_error("batch " + std::to_string(b + 1) + " of epoch " + std::to_string(epoch + 1) +
                                   " has no image left to train on");
        }
        auto x = normalize_fed_images(batch.images, config_.preprocessing, device_, config_.channels_last);
        return std::pair<torch::Tensor, torch::Tensor>{x, batch.labels.to(device_)};
      },
      progress, stop);
}

EpochResult TrainingSession::run_epoch(const BatchSource& batch_of,
                                       const std::function<void(const TrainProgress&)>& progress,
                                       const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto& pos = position_;
  const int64_t batches = batches_per_epoch();
  start_data_parallel();
  net_->train();
  if (config_.freeze_backbone) {
    // A frozen backbone's BatchNorm layers normalise with their running statistics and keep them.
    for (auto& module : net_->modules(/*include_self=*/false)) {
      if (module->as<torch::nn::BatchNorm2dImpl>()) module->eval();
    }
  }

  if (data_parallel()) reducer_->reset_exposed_seconds();

  // With a GradScaler a non-finite loss only skips its step, as in PyTorch; without one the
  // weights are already ruined, so the epoch stops at the first such batch.
  EpochMetrics metrics(pos, device_, plan_.world_size, /*watch_divergence=*/!scaler_.enabled());
  int64_t last_batch = pos.next_batch;
  EpochResult result;
  double lr = lr_at(pos.epoch * batches + pos.next_batch);

  for (int64_t b = pos.next_batch; b < batches; ++b) {
    const auto [x, y] = batch_of(pos.epoch, b);
    seed_dropout(pos.epoch, b);
    lr = lr_at(pos.epoch * batches + b);
    const auto out = train_step(x, y, lr);
    metrics.add(out.loss, out.logits, y, b);
    last_batch = b + 1;

    // Metrics are read at fixed batch numbers (so an interrupted epoch sums in the same order).
    // One process stops after any batch; data-parallel ranks only where they all read them.
    const bool read_point = last_batch % config_.progress_every == 0 || last_batch == batches;
    const bool stop_requested = stop.load();
    bool stopping = data_parallel() ? false : stop_requested;
    if (read_point) {
      const bool any_rank_stopping = metrics.read(data_parallel() ? group_.get() : nullptr, stop_requested);
      if (data_parallel()) stopping = any_rank_stopping;
    }
    if (metrics.diverged_batch() >= 0) break;
    if (progress && (read_point || stopping)) {
      TrainProgress p;
      p.epoch = pos.epoch;
      p.batch = last_batch;
      p.batches = batches;
      p.images = metrics.seen();
      p.loss = metrics.mean_loss(/*with_unread=*/stopping);
      p.accuracy = metrics.accuracy(/*with_unread=*/stopping);
      p.seconds = pos.seconds + std::chrono::duration<double>(Clock::now() - started).count();
      p.lr = lr;
      p.scale = scaler_.scale_value();
      progress(p);
    }
    if (stopping) break;
  }

  const double seconds = pos.seconds + std::chrono::duration<double>(Clock::now() - started).count();
  // The epoch's freed tensors were kept for its next step (malloc_tuning.h); between epochs they go
  // back to the OS, so that the process's memory reads as what it holds.
  release_free_memory();
  result.diverged_batch = metrics.diverged_batch();
  result.completed = last_batch == batches && result.diverged_batch < 0;
  result.images = metrics.seen();
  result.batches = last_batch;
  result.loss = metrics.mean_loss(/*with_unread=*/!result.completed);
  result.accuracy = metrics.accuracy(/*with_unread=*/!result.completed);
  result.seconds = seconds;
  result.lr = lr;
  result.scale = scaler_.scale_value();
  result.skipped_steps = scaler_.skipped_steps();
  result.fused_adam = optimizer_.fused();
  if (data_parallel()) result.exposed_communication_seconds = reducer_->exposed_seconds();
  if (result.diverged_batch >= 0) return result;  // the position stays at the last sound state
  if (result.completed) {
    const int64_t next_epoch = pos.epoch + 1;
    pos = EpochPosition{};
    pos.epoch = next_epoch;
  } else {
    pos.next_batch = last_batch;
    pos.loss_sum = metrics.read_loss_sum();
    pos.correct = metrics.read_correct();
    pos.pending_loss = metrics.unread_loss_sum();
    pos.pending_correct = metrics.unread_correct();
    pos.seen = metrics.seen();
    pos.seconds = seconds;
  }
  return result;
}

TrainingSession::StepOutput TrainingSession::train_step(const torch::Tensor& x, const torch::Tensor& y, double lr) {
  StepOutput result;
  broadcast_buffers();  // DDP's broadcast_buffers: rank 0's BatchNorm statistics before each forward
  {
    AutocastGuard autocast(device_.type(), config_.amp);
    auto out = net_->forward_all(x);
    result.logits = out.logits;
    auto options = F::CrossEntropyFuncOptions().label_smoothing(config_.label_smoothing);
    result.loss = F::cross_entropy(out.logits, y, options);
    if (out.aux.defined() && config_.aux_loss_weight > 0) {
      result.loss = result.loss + config_.aux_loss_weight * F::cross_entropy(out.aux, y, options);
    }
  }
  for (auto& p : net_->parameters()) p.mutable_grad() = torch::Tensor();  // zero_grad(set_to_none=True)
  // Data-parallel: gradients are averaged across ranks while still scaled, so an overflow on any
  // rank makes every rank skip the step and back off the same scale.
  if (reducer_) reducer_->prepare();
  scaler_.scale(result.loss).backward();
  if (reducer_) reducer_->finish();
  if (scaler_.enabled()) {
    std::vector<torch::Tensor> grads;
    for (auto& p : net_->parameters()) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    scaler_.unscale(grads);
    // The optimizer skips the step on overflow: on the device when it is fused, else after a read.
    optimizer_.step(lr, scaler_.found_inf_tensor());
    scaler_.update();
  } else {
    optimizer_.step(lr);
  }
  return result;
}

EvalResult TrainingSession::evaluate(const ImageStore& data, int64_t batch_size, int64_t num_classes) {
  const int64_t world = data_parallel() ? group_->world_size() : 1;
  const int64_t rank = data_parallel() ? group_->rank() : 0;
  return run_evaluation(data.size(), batch_size, num_classes, [&](int64_t, int64_t begin, int64_t size) {
    auto indices = torch::arange(rank + begin * world, rank + (begin + size) * world, world, torch::kLong);
    auto x = data.eval_batch(indices, config_.preprocessing);
    if (config_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    return std::pair<torch::Tensor, torch::Tensor>{x, data.labels(indices)};
  });
}

EvalResult TrainingSession::evaluate(FedBatches& fed, int64_t batch_size, int64_t num_classes) {
  return run_evaluation(fed.size(), batch_size, num_classes, [&](int64_t i, int64_t, int64_t) {
    auto batch = fed.pop(FedBatches::kEvaluation, i);
    auto x = normalize_fed_images(batch.images, config_.preprocessing, device_, config_.channels_last);
    return std::pair<torch::Tensor, torch::Tensor>{x, batch.labels.to(device_)};
  });
}

EvalResult TrainingSession::run_evaluation(int64_t n, int64_t batch_size, int64_t num_classes,
                                           const EvalSource& batch_of) {
  torch::NoGradGuard no_grad;
  const bool was_training = net_->is_training();
  start_data_parallel();
  net_->eval();
  broadcast_buffers();
  auto dev = torch::TensorOptions().device(device_);
  auto loss_sum = torch::zeros({}, dev.dtype(torch::kDouble));
  auto confusion = torch::zeros({num_classes * num_classes}, dev.dtype(torch::kLong));
  // Data-parallel: this rank's images are rank, rank + world, ... (each counted once, no padding).
  const int64_t world = data_parallel() ? group_->world_size() : 1;
  const int64_t rank = data_parallel() ? group_->rank() : 0;
  const int64_t mine = rank < n ? (n - rank + world - 1) / world : 0;
  for (int64_t begin = 0, i = 0; begin < mine; begin += batch_size, ++i) {
    const int64_t size = std::min(batch_size, mine - begin);
    const auto [x, y] = batch_of(i, begin, size);
    if (x.size(0) == 0) continue;
    torch::Tensor logits;
    {
      AutocastGuard autocast(device_.type(), config_.amp);
      logits = net_->forward_all(x).logits.to(torch::kFloat);
    }
    loss_sum += F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kSum)).to(torch::kDouble);
    confusion += torch::bincount(y * num_classes + logits.argmax(1), {}, num_classes * num_classes);
  }
  if (data_parallel()) {
    group_->all_reduce(loss_sum);
    group_->all_reduce(confusion);
  }
  net_->train(was_training);
  EvalResult r;
  r.confusion = confusion.view({num_classes, num_classes}).to(torch::kCPU);
  // The images evaluated (all of the split, unless a fed batch left files out).
  r.images = r.confusion.sum().item<int64_t>();
  r.loss = r.images ? loss_sum.item<double>() / r.images : 0;
  r.accuracy = r.images ? static_cast<double>(r.confusion.diagonal().sum().item<int64_t>()) / r.images : 0;
  return r;
}

BenchmarkResult TrainingSession::benchmark(const BenchmarkOptions& options) {
  const int64_t batch = config_.batch_size, size = options.image_size;
  auto x = torch::randn({batch, 3, size, size}, torch::TensorOptions().device(device_));
  if (config_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t classes = net_->named_parameters()["fc.weight"].size(0);
  auto y = torch::randint(0, classes, {batch}, torch::TensorOptions().dtype(torch::kLong).device(device_));
  const bool was_training = net_->is_training();
  net_->train(options.train);
  auto run_step = [&] {
    if (options.train) {
      train_step(x, y, config_.optimizer.lr);
    } else {
      c10::InferenceMode inference;
      AutocastGuard autocast(device_.type(), config_.amp);
      net_->forward_all(x);
    }
  };
  const int cuda_index = device_.index() < 0 ? 0 : device_.index();
  if (device_.is_cuda()) reset_cuda_peak_memory(cuda_index);
  for (int64_t i = 0; i < options.warmup; ++i) run_step();
  if (device_.is_cuda()) torch::cuda::synchronize();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < options.steps; ++i) run_step();
  if (device_.is_cuda()) torch::cuda::synchronize();
  BenchmarkResult result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.images = batch * options.steps;
  net_->train(was_training);
  if (device_.is_cuda()) {
    if (const auto memory = cuda_memory_stats(cuda_index)) result.peak_memory = memory->peak_allocated;
  }
  return result;
}

}  // namespace xt
