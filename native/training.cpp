#include "training.h"

#include <chrono>
#include <cmath>
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
                                 int64_t train_size)
    : net_(std::move(net)),
      config_(config),
      device_(device),
      train_size_(train_size),
      optimizer_([&] {
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
      }(), config.optimizer, config.fused_adam),
      scaler_(config.scaler, device) {
  if (config.batch_size < 1) throw std::invalid_argument("the batch size must be positive");
  if (config.epochs < 1) throw std::invalid_argument("the number of epochs must be positive");
  if (train_size < 2) throw std::invalid_argument("the training set needs at least 2 images");
  config_.preprocessing.validate(1);
  if (config.amp == AmpMode::FP16 && device.is_cpu()) throw std::invalid_argument("fp16 mixed precision needs CUDA; on the CPU use bf16 or off");
  // Fixed input shapes: let cuDNN pick the fastest convolution algorithms (process-wide, as
  // torch.backends.cudnn.benchmark).
  if (device.is_cuda()) at::globalContext().setBenchmarkCuDNN(config.cudnn_benchmark);
}

int64_t TrainingSession::batches_per_epoch() const {
  // A last batch of a single image is dropped: BatchNorm cannot train on it.
  const int64_t full = train_size_ / config_.batch_size;
  const int64_t rest = train_size_ % config_.batch_size;
  return full + (rest >= 2 ? 1 : 0);
}

double TrainingSession::lr_at(int64_t global_step) const {
  if (!config_.cosine_schedule) return config_.optimizer.lr;
  const double total = static_cast<double>(config_.epochs * batches_per_epoch());
  return config_.optimizer.lr * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, global_step / total)));
}

EpochResult TrainingSession::train_epoch(const ImageStore& data, const std::function<void(const TrainProgress&)>& progress,
                                         const std::atomic<bool>& stop) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto& pos = position_;
  const int64_t batches = batches_per_epoch();
  net_->train();

  // The epoch's order of images.
  auto order_gen = at::detail::createCPUGenerator(mix_seed(config_.seed, pos.epoch, -1));
  auto order = torch::randperm(train_size_, order_gen, torch::kLong);

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
  auto read_metrics = [&] {
    host_loss_sum += loss_sum.item<double>();
    host_correct += correct.item<int64_t>();
    loss_sum.zero_();
    correct.zero_();
    if (watch_divergence) result.diverged_batch = first_nonfinite.item<int64_t>();
  };

  for (int64_t b = pos.next_batch; b < batches; ++b) {
    const int64_t begin = b * config_.batch_size;
    const int64_t size = std::min(config_.batch_size, train_size_ - begin);
    auto indices = order.slice(0, begin, begin + size);
    auto aug_gen = at::detail::createCPUGenerator(mix_seed(config_.seed, pos.epoch, b));
    auto augmentation = data.sample_augmentation(size, config_.preprocessing, aug_gen);
    auto x = data.train_batch(indices, config_.preprocessing, augmentation);
    auto y = data.labels(indices);
    if (config_.channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    // Dropout masks come from the default generator: seed it per batch for exact resumes.
    torch::manual_seed(mix_seed(config_.seed ^ 0x5bd1e995ULL, pos.epoch, b));

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
    seen += size;
    last_batch = b + 1;
    const bool stopping = stop.load();
    // Metrics are read at fixed batch numbers (so an interrupted epoch sums in the same order).
    if (last_batch % config_.progress_every == 0 || last_batch == batches) read_metrics();
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
  scaler_.scale(result.loss).backward();
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
  net_->eval();
  auto dev = torch::TensorOptions().device(device_);
  auto loss_sum = torch::zeros({}, dev.dtype(torch::kDouble));
  auto confusion = torch::zeros({num_classes * num_classes}, dev.dtype(torch::kLong));
  const int64_t n = data.size();
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const int64_t size = std::min(batch_size, n - begin);
    auto indices = torch::arange(begin, begin + size, torch::kLong);
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
