#include "adam.h"

#include "adam_cpu.h"

#include <cmath>
#include <stdexcept>

namespace xt {

// torch.optim's fused Adam kernels (CUDA) arrived in 2.0. XT_NO_FUSED_ADAM builds without them.
#if TORCH_VERSION_MAJOR >= 2 && !defined(XT_NO_FUSED_ADAM)
#define XT_FUSED_ADAM 1
#endif

Adam::Adam(std::vector<std::pair<std::string, torch::Tensor>> params, const AdamOptions& options, bool allow_fused)
    : options_(options), params_(std::move(params)) {
  if (!(options.lr > 0)) throw std::invalid_argument("lr must be positive");
  if (!(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1)) {
    throw std::invalid_argument("betas must be in [0, 1)");
  }
  if (!(options.eps > 0)) throw std::invalid_argument("eps must be positive");
  if (options.weight_decay < 0) throw std::invalid_argument("weight_decay must be >= 0");
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

int64_t Adam::steps() const { return fused_ ? static_cast<int64_t>(device_steps_.item<float>()) : steps_; }

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
                      options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/{},
                      inf);
  } else {
    at::_fused_adam_(params, grads, exp_avgs, exp_avg_sqs, {}, state_steps, lr, options_.beta1, options_.beta2,
                     options_.weight_decay, options_.eps, /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/{},
                     inf);
  }
  if (found_inf.defined()) device_steps_.sub_(found_inf.reshape({}));
  return true;
#else
  (void)lr;
  (void)found_inf;
  return false;
#endif
}

namespace {

// Whether adam_step_cpu() can update these in place: CPU float32 tensors, dense, all four laid out
// alike (a gradient in another memory format than its parameter takes the ATen path).
bool one_pass_eligible(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& exp_avg,
                       const torch::Tensor& exp_avg_sq) {
  for (const auto* t : {&param, &grad, &exp_avg, &exp_avg_sq}) {
    if (!t->is_cpu() || t->scalar_type() != torch::kFloat || t->is_sparse() || t->strides() != param.strides() ||
        t->sizes() != param.sizes()) {
      return false;
    }
  }
  return param.is_non_overlapping_and_dense();
}

}  // namespace

void Adam::step_single_tensor(double lr) {
  steps_++;
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(options_.beta2, static_cast<double>(steps_)));
  const double step_size = lr / bias_correction1;
  AdamCpuStep cpu;
  cpu.beta1 = static_cast<float>(options_.beta1);
  cpu.one_minus_beta1 = static_cast<float>(1.0 - options_.beta1);
  cpu.beta2 = static_cast<float>(options_.beta2);
  cpu.one_minus_beta2 = static_cast<float>(1.0 - options_.beta2);
  cpu.bias_correction2_sqrt = static_cast<float>(bias_correction2_sqrt);
  cpu.eps = static_cast<float>(options_.eps);
  cpu.neg_step_size = static_cast<float>(-step_size);
  cpu.decoupled = options_.weight_decay != 0 && options_.decoupled_weight_decay;
  cpu.decoupled_factor = static_cast<float>(1.0 - lr * options_.weight_decay);
  cpu.l2_weight_decay = options_.decoupled_weight_decay ? 0.0f : static_cast<float>(options_.weight_decay);
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& param = params_[i].second;
    if (!param.grad().defined()) continue;
    auto grad = param.grad();
    if (one_pass_eligible(param, grad, exp_avg_[i], exp_avg_sq_[i])) {
      adam_step_cpu(param.data_ptr<float>(), grad.data_ptr<float>(), exp_avg_[i].data_ptr<float>(),
                    exp_avg_sq_[i].data_ptr<float>(), param.numel(), cpu);
      continue;
    }
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
      if (it->second.sizes() != (*pair)[i].sizes())
        throw std::invalid_argument("optimizer state '" + key + "' has the wrong shape");
      (*pair)[i].copy_(it->second);
    }
  }
  steps_ = steps;
  if (fused_) device_steps_.fill_(static_cast<double>(steps));
}

}  // namespace xt
