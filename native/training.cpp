#include "training.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

namespace xt {
namespace F = torch::nn::functional;

namespace {

constexpr bool kAutocastDeviceApi = TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4);
// libtorch gained CPU kernels for the AMP ops in 2.3.
constexpr bool kCpuAmpKernels = TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3);
// torch.optim's fused Adam kernels (CUDA) arrived in 2.0. XT_NO_FUSED_ADAM builds without them.
#if TORCH_VERSION_MAJOR >= 2 && !defined(XT_NO_FUSED_ADAM)
#define XT_FUSED_ADAM 1
#endif

at::ScalarType amp_dtype(AmpMode mode) { return mode == AmpMode::BF16 ? at::kBFloat16 : at::kHalf; }

// A stream of independent seeds from (seed, epoch, batch): splitmix64 over their combination.
uint64_t mix_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) * 0xBF58476D1CE4E5B9ULL +
               static_cast<uint64_t>(batch + 1) * 0x94D049BB133111EBULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFFULL;
}

}  // namespace

// ---- autocast ------------------------------------------------------------------------------

AutocastGuard::AutocastGuard(torch::DeviceType device, AmpMode mode) : device_(device) {
  if (mode == AmpMode::Off) return;
  if (device == torch::kCPU && mode != AmpMode::BF16) {
    throw std::invalid_argument("mixed precision on the CPU supports bf16 only");
  }
  const auto dtype = amp_dtype(mode);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  previous_enabled_ = at::autocast::is_autocast_enabled(device);
  previous_dtype_ = at::autocast::get_autocast_dtype(device);
  at::autocast::set_autocast_enabled(device, true);
  at::autocast::set_autocast_dtype(device, dtype);
#else
  if (device == torch::kCUDA) {
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    previous_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // As torch.autocast's __exit__: drop the cast cache when the outermost region ends.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(device_, previous_enabled_);
  at::autocast::set_autocast_dtype(device_, previous_dtype_);
#else
  if (device_ == torch::kCUDA) {
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(previous_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
#endif
}

// ---- GradScaler ----------------------------------------------------------------------------

GradScaler::GradScaler(const GradScalerOptions& options, torch::Device device) : options_(options) {
  if (!(options.init_scale > 0)) throw std::invalid_argument("GradScaler initScale must be positive");
  if (!(options.growth_factor > 1)) throw std::invalid_argument("GradScaler growthFactor must be greater than 1");
  if (!(options.backoff_factor > 0 && options.backoff_factor < 1)) throw std::invalid_argument("GradScaler backoffFactor must be in (0, 1)");
  if (options.growth_interval < 1) throw std::invalid_argument("GradScaler growthInterval must be a positive integer");
  auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({1}, options.init_scale, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
  skipped_steps_ = torch::zeros({1}, f);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const {
  return options_.enabled ? loss * scale_ : loss;
}

void GradScaler::unscale(const std::vector<torch::Tensor>& grads) {
  if (!options_.enabled || grads.empty()) return;
  auto inv_scale = scale_.to(torch::kDouble).reciprocal().to(torch::kFloat);
  if (scale_.is_cuda() || kCpuAmpKernels) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv_scale);
    return;
  }
  for (const auto& g : grads) {
    found_inf_.copy_(torch::maximum(found_inf_, torch::logical_not(torch::isfinite(g)).any().to(torch::kFloat)));
    g.mul_(inv_scale);
  }
}

bool GradScaler::found_inf() const { return options_.enabled && found_inf_.item<float>() != 0.0f; }

void GradScaler::update() {
  if (!options_.enabled) return;
  skipped_steps_.add_(found_inf_);
  if (scale_.is_cuda() || kCpuAmpKernels) {
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, options_.growth_factor, options_.backoff_factor,
                           options_.growth_interval);
  } else {
    // The same rule as the ATen kernel, on the host: arithmetic in double, stored as float.
    float scale = scale_.item<float>();
    int32_t tracker = growth_tracker_.item<int32_t>();
    if (found_inf_.item<float>() != 0.0f) {
      scale = static_cast<float>(scale * options_.backoff_factor);
      tracker = 0;
    } else if (tracker + 1 == options_.growth_interval) {
      const auto grown = static_cast<float>(scale * options_.growth_factor);
      if (std::isfinite(grown)) scale = grown;
      tracker = 0;
    } else {
      tracker += 1;
    }
    scale_.fill_(scale);
    growth_tracker_.fill_(tracker);
  }
  found_inf_.zero_();
}

double GradScaler::scale_value() const { return options_.enabled ? scale_.item<float>() : 1.0; }
int64_t GradScaler::growth_tracker() const { return growth_tracker_.item<int32_t>(); }
int64_t GradScaler::skipped_steps() const { return static_cast<int64_t>(skipped_steps_.item<float>()); }

void GradScaler::set_state(double scale, int64_t growth_tracker, int64_t skipped_steps) {
  scale_.fill_(scale);
  growth_tracker_.fill_(growth_tracker);
  skipped_steps_.fill_(static_cast<double>(skipped_steps));
}

// ---- Adam ----------------------------------------------------------------------------------

Adam::Adam(std::vector<std::pair<std::string, torch::Tensor>> params, const AdamOptions& options, bool allow_fused)
    : options_(options), params_(std::move(params)) {
  if (!(options.lr > 0)) throw std::invalid_argument("lr must be positive");
  if (!(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1)) {
    throw std::invalid_argument("betas must be in [0, 1)");
  }
  if (!(options.eps > 0)) throw std::invalid_argument("eps must be positive");
  if (options.weight_decay < 0) throw std::invalid_argument("weightDecay must be >= 0");
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p.second, at::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p.second, at::MemoryFormat::Preserve));
  }
#ifdef XT_FUSED_ADAM
  // The fused kernels take float32 tensors of one CUDA device.
  fused_ = allow_fused && !params_.empty();
  for (const auto& p : params_) {
    fused_ = fused_ && p.second.is_cuda() && p.second.scalar_type() == torch::kFloat &&
             p.second.device() == params_.front().second.device();
  }
  if (fused_) {
    device_steps_ = torch::zeros({}, params_.front().second.options());
    no_overflow_ = torch::zeros({1}, params_.front().second.options());
  }
#else
  (void)allow_fused;
#endif
}

int64_t Adam::steps() const {
  return fused_ ? static_cast<int64_t>(device_steps_.item<float>()) : steps_;
}

void Adam::step(double lr, const torch::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  if (fused_ && step_fused(lr, found_inf)) return;
  if (found_inf.defined() && found_inf.item<float>() != 0.0f) return;
  if (fused_) {
    // A step the fused kernels could not take: continue the count from the device.
    steps_ = steps();
    step_single_tensor(lr);
    device_steps_.fill_(static_cast<double>(steps_));
    return;
  }
  step_single_tensor(lr);
}

bool Adam::step_fused(double lr, const torch::Tensor& found_inf) {
#ifdef XT_FUSED_ADAM
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& param = params_[i].second;
    const auto& grad = param.grad();
    // One shared step count stands for torch.optim's per-parameter ones, so every parameter
    // must step together; and the kernels need gradients laid out like their parameters.
    if (!grad.defined() || grad.strides() != param.strides()) return false;
    params.push_back(param);
    grads.push_back(grad);
    exp_avgs.push_back(exp_avg_[i]);
    exp_avg_sqs.push_back(exp_avg_sq_[i]);
  }
  // As torch.optim's _fused_adam: count the step, run the kernel (which does nothing when
  // found_inf is set), then take the count back on overflow. All on the device.
  device_steps_.add_(1);
  const std::vector<torch::Tensor> state_steps(params.size(), device_steps_);
  // Always pass a flag (a zero one without a scaler): one call for every libtorch's optional type.
  const auto& inf = found_inf.defined() ? found_inf : no_overflow_;
  if (options_.decoupled_weight_decay) {
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, {}, state_steps, lr, options_.beta1, options_.beta2,
                      options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/{}, inf);
  } else {
    at::_fused_adam_(params, grads, exp_avgs, exp_avg_sqs, {}, state_steps, lr, options_.beta1, options_.beta2,
                     options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/{}, inf);
  }
  if (found_inf.defined()) device_steps_.sub_(found_inf.reshape({}));
  return true;
#else
  (void)lr;
  (void)found_inf;
  return false;
#endif
}

void Adam::step_single_tensor(double lr) {
  steps_++;
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(steps_)));
  const double step_size = lr / bias_correction1;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& param = params_[i].second;
    if (!param.grad().defined()) continue;
    auto grad = param.grad();
    if (options_.weight_decay != 0) {
      if (options_.decoupled_weight_decay) {
        param.mul_(1.0 - lr * options_.weight_decay);
      } else {
        grad = grad.add(param, options_.weight_decay);
      }
    }
    exp_avg_[i].mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    exp_avg_sq_[i].mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    auto denom = (exp_avg_sq_[i].sqrt() / bias_correction2_sqrt).add_(options_.eps);
    param.addcdiv_(exp_avg_[i], denom, -step_size);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> Adam::state() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("exp_avg." + params_[i].first, exp_avg_[i]);
    out.emplace_back("exp_avg_sq." + params_[i].first, exp_avg_sq_[i]);
  }
  return out;
}

void Adam::load_state(const std::map<std::string, torch::Tensor>& state, int64_t steps) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    for (auto* pair : {&exp_avg_, &exp_avg_sq_}) {
      const std::string key = (pair == &exp_avg_ ? "exp_avg." : "exp_avg_sq.") + params_[i].first;
      auto it = state.find(key);
      if (it == state.end()) throw std::invalid_argument("optimizer state has no '" + key + "'");
      if (it->second.sizes() != (*pair)[i].sizes()) throw std::invalid_argument("optimizer state '" + key + "' has the wrong shape");
      (*pair)[i].copy_(it->second);
    }
  }
  steps_ = steps;
  if (fused_) device_steps_.fill_(static_cast<double>(steps));
}

// ---- the training loop ----------------------------------------------------------------------

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
  if (config.batch_size < 1) throw std::invalid_argument("batchSize must be a positive integer");
  if (config.epochs < 1) throw std::invalid_argument("epochs must be a positive integer");
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

}  // namespace xt
