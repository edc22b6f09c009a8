#include "training.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "cuda_support.h"

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

}  // namespace

TrainingSession::TrainingSession(std::shared_ptr<Network> net, const TrainConfig& config, torch::Device device,
                                 int64_t train_size, std::shared_ptr<DistributedGroup> group)
    : net_(std::move(net)),
      config_(config),
      device_(device),
      train_size_(train_size),
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

EpochResult TrainingSession::train_epoch(const ImageStore& data,
                                         const std::function<void(const TrainProgress&)>& progress,
                                         const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto& pos = position_;
  const int64_t batches = batches_per_epoch();
  start_data_parallel();
  net_->train();

  // The epoch's order of this rank's images.
  const auto order = epoch_indices(pos.epoch);
  const int64_t world = plan_.world_size, rank = plan_.rank;
  if (data_parallel()) reducer_->reset_exposed_seconds();

  auto loss_sum = torch::full({}, pos.pending_loss, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  auto correct = torch::full({}, pos.pending_correct, torch::TensorOptions().dtype(torch::kLong).device(device_));
  double host_loss_sum = pos.loss_sum;
  int64_t host_correct = pos.correct;
  int64_t seen = pos.seen;
  int64_t last_batch = pos.next_batch;
  EpochResult result;
  double lr = lr_at(pos.epoch * batches + pos.next_batch);

  // The batch whose loss first was NaN or infinite (-1: none yet), kept on the device and read with
  // the metrics. With a GradScaler a non-finite loss only skips its step, as in PyTorch; without
  // one the weights are already ruined, so the epoch stops there.
  const bool watch_divergence = !scaler_.enabled();
  auto first_nonfinite = torch::full({}, -1, torch::TensorOptions().dtype(torch::kLong).device(device_));
  // Data-parallel: whether any rank was asked to stop, agreed on when the metrics are read.
  bool group_stopping = false;
  auto read_metrics = [&] {
    if (data_parallel()) {
      // One all-reduce of [loss sum, correct, stop requests, ranks that diverged]; a second one
      // finds the first diverged batch only when some rank did.
      auto flags = torch::tensor({stop.load() ? 1.0 : 0.0, 0.0}, loss_sum.options());
      if (watch_divergence) flags[1].copy_((first_nonfinite >= 0).to(torch::kDouble));
      auto sums = torch::cat({loss_sum.reshape({1}), correct.to(torch::kDouble).reshape({1}), flags});
      group_->all_reduce(sums);
      const auto host = sums.to(torch::kCPU);
      const auto values = host.accessor<double, 1>();
      host_loss_sum += values[0];
      host_correct += static_cast<int64_t>(std::llround(values[1]));
      group_stopping = values[2] > 0;
      if (values[3] > 0) {
        auto first = first_nonfinite.masked_fill(first_nonfinite < 0, std::numeric_limits<int64_t>::max());
        group_->all_reduce(first, ReduceOp::Min);
        result.diverged_batch = first.item<int64_t>();
      }
    } else {
      host_loss_sum += loss_sum.item<double>();
      host_correct += correct.item<int64_t>();
      if (watch_divergence) result.diverged_batch = first_nonfinite.item<int64_t>();
    }
    loss_sum.zero_();
    correct.zero_();
  };

  for (int64_t b = pos.next_batch; b < batches; ++b) {
    const int64_t begin = b * plan_.rank_batch();
    const int64_t size = plan_.rank_batch_size(b);
    auto indices = order.slice(0, begin, begin + size);
    // The crops and flips of the whole global batch, of which this rank takes its rows (those of
    // its images), so an image is augmented alike whatever the number of ranks.
    auto aug_gen = at::detail::createCPUGenerator(mix_seed(config_.seed, pos.epoch, b));
    auto augmentation = data.sample_augmentation(size * world, config_.preprocessing, aug_gen);
    if (world > 1) {
      augmentation.offsets = augmentation.offsets.slice(0, rank, size * world, world);
      augmentation.flips = augmentation.flips.slice(0, rank, size * world, world);
    }
    auto x = data.train_batch(indices, config_.preprocessing, augmentation);
    auto y = data.labels(indices);
    if (config_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    // Dropout masks come from the default generator: seed it per batch (and rank) for exact resumes.
    torch::manual_seed(
        mix_seed((config_.seed ^ 0x5bd1e995ULL) + static_cast<uint64_t>(rank) * 0x632BE59BD9B4E019ULL, pos.epoch, b));

    lr = lr_at(pos.epoch * batches + b);
    const auto out = train_step(x, y, lr);
    const auto& loss = out.loss;
    const auto& logits = out.logits;

    {
      torch::NoGradGuard no_grad;
      loss_sum += loss.detach().to(torch::kDouble) * size;
      correct += logits.detach().argmax(1).eq(y).sum();
      if (watch_divergence) {
        auto first = (first_nonfinite < 0).logical_and(loss.detach().isfinite().logical_not());
        first_nonfinite.masked_fill_(first, b);
      }
    }
    seen += size * world;
    last_batch = b + 1;
    // Metrics are read at fixed batch numbers (so an interrupted epoch sums in the same order).
    const bool read_point = last_batch % config_.progress_every == 0 || last_batch == batches;
    if (read_point) read_metrics();
    // One process stops at any batch; data-parallel ranks only where they all read the metrics.
    const bool stopping = data_parallel() ? read_point && group_stopping : stop.load();
    if (result.diverged_batch >= 0) break;
    if (progress && (last_batch % config_.progress_every == 0 || last_batch == batches || stopping)) {
      const double pending = stopping ? loss_sum.item<double>() : 0.0;
      const int64_t pending_correct = stopping ? correct.item<int64_t>() : 0;
      TrainProgress p;
      p.epoch = pos.epoch;
      p.batch = last_batch;
      p.batches = batches;
      p.images = seen;
      p.loss = (host_loss_sum + pending) / seen;
      p.accuracy = static_cast<double>(host_correct + pending_correct) / seen;
      p.seconds = pos.seconds + std::chrono::duration<double>(Clock::now() - started).count();
      p.lr = lr;
      p.scale = scaler_.scale_value();
      progress(p);
    }
    if (stopping) break;
  }

  const double seconds = pos.seconds + std::chrono::duration<double>(Clock::now() - started).count();
  result.completed = last_batch == batches && result.diverged_batch < 0;
  result.images = seen;
  result.batches = last_batch;
  const double all_loss = host_loss_sum + (result.completed ? 0.0 : loss_sum.item<double>());
  const int64_t all_correct = host_correct + (result.completed ? 0 : correct.item<int64_t>());
  result.loss = seen ? all_loss / seen : 0;
  result.accuracy = seen ? static_cast<double>(all_correct) / seen : 0;
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
    pos.loss_sum = host_loss_sum;
    pos.correct = host_correct;
    pos.pending_loss = loss_sum.item<double>();
    pos.pending_correct = correct.item<int64_t>();
    pos.seen = seen;
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
  torch::NoGradGuard no_grad;
  const bool was_training = net_->is_training();
  start_data_parallel();
  net_->eval();
  broadcast_buffers();
  auto dev = torch::TensorOptions().device(device_);
  auto loss_sum = torch::zeros({}, dev.dtype(torch::kDouble));
  auto confusion = torch::zeros({num_classes * num_classes}, dev.dtype(torch::kLong));
  const int64_t n = data.size();
  // Data-parallel: this rank's images are rank, rank + world, ... (each counted once, no padding).
  const int64_t world = data_parallel() ? group_->world_size() : 1;
  const int64_t rank = data_parallel() ? group_->rank() : 0;
  const int64_t mine = rank < n ? (n - rank + world - 1) / world : 0;
  for (int64_t begin = 0; begin < mine; begin += batch_size) {
    const int64_t size = std::min(batch_size, mine - begin);
    auto indices = torch::arange(rank + begin * world, rank + (begin + size) * world, world, torch::kLong);
    auto x = data.eval_batch(indices, config_.preprocessing);
    auto y = data.labels(indices);
    if (config_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
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
  r.images = n;
  r.confusion = confusion.view({num_classes, num_classes}).to(torch::kCPU);
  r.loss = n ? loss_sum.item<double>() / n : 0;
  r.accuracy = n ? static_cast<double>(r.confusion.diagonal().sum().item<int64_t>()) / n : 0;
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
