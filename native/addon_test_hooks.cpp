// Test hooks, not part of the public API: single steps of the training loop's Adam and
// GradScaler on tensors given from JavaScript, so the parity tests (test/optim.test.ts,
// test/helpers/optim-oracle.ts) can check them against torch.optim and torch.amp step by step;
// one convolution of a training pass with its gradients (test/training-convolutions.test.ts).
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "adam.h"
#include "grad_scaler.h"
#include "pointwise_matmul.h"
#include "napi_support.h"

namespace xt::napi {
namespace {

std::vector<torch::Tensor> float_tensors(const Napi::Value& value, const char* what) {
  if (!value.IsArray())
    throw std::invalid_argument(std::string(what) + " must be an array of { shape, data: Float32Array }");
  auto list = value.As<Napi::Array>();
  std::vector<torch::Tensor> out;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    auto o = list.Get(i).As<Napi::Object>();
    const auto shape = shape_of(o.Get("shape"));
    if (!o.Get("data").IsTypedArray() || o.Get("data").As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
      throw std::invalid_argument(std::string(what) + ": data must be a Float32Array");
    }
    auto data = o.Get("data").As<Napi::Float32Array>();
    int64_t numel = 1;
    for (auto d : shape) numel *= d;
    if (numel != static_cast<int64_t>(data.ElementLength()))
      throw std::invalid_argument(std::string(what) + ": data does not match shape");
    out.push_back(torch::from_blob(data.Data(), shape, torch::kFloat).clone());
  }
  return out;
}

Napi::Array float_list(Napi::Env env, const std::vector<torch::Tensor>& tensors) {
  auto out = Napi::Array::New(env, tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto o = Napi::Object::New(env);
    o.Set("shape", js_shape(env, tensors[i].sizes()));
    o.Set("data", float32_array(env, tensors[i].to(torch::kCPU).contiguous().clone()));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

// adamStep({ params, grads, expAvg, expAvgSq, steps, lr, beta1, beta2, eps, weightDecay, decoupled, device })
//   -> { params, expAvg, expAvgSq, steps, fused }: one step of the training loop's Adam on `device`
//   (default 'cpu'; on CUDA the fused kernels where libtorch has them).
Napi::Value AdamStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    auto params = float_tensors(o.Get("params"), "params");
    auto grads = float_tensors(o.Get("grads"), "grads");
    auto exp_avg = float_tensors(o.Get("expAvg"), "expAvg");
    auto exp_avg_sq = float_tensors(o.Get("expAvgSq"), "expAvgSq");
    const auto device = parse_device(string_option(o, "device", "cpu"));
    for (auto* list : {&params, &grads, &exp_avg, &exp_avg_sq}) {
      for (auto& t : *list) t = t.to(device);
    }
    if (grads.size() != params.size() || exp_avg.size() != params.size() || exp_avg_sq.size() != params.size()) {
      throw std::invalid_argument("params, grads, expAvg and expAvgSq must have the same length");
    }
    AdamOptions options;
    options.lr = number_option(o, "lr", options.lr);
    options.beta1 = number_option(o, "beta1", options.beta1);
    options.beta2 = number_option(o, "beta2", options.beta2);
    options.eps = number_option(o, "eps", options.eps);
    options.weight_decay = number_option(o, "weightDecay", options.weight_decay);
    options.decoupled_weight_decay = bool_option(o, "decoupled", false);
    std::vector<std::pair<std::string, torch::Tensor>> named;
    std::map<std::string, torch::Tensor> state;
    for (size_t i = 0; i < params.size(); ++i) {
      const auto name = std::to_string(i);
      params[i].mutable_grad() = grads[i];
      named.emplace_back(name, params[i]);
      state["exp_avg." + name] = exp_avg[i];
      state["exp_avg_sq." + name] = exp_avg_sq[i];
    }
    Adam adam(named, options);
    adam.load_state(state, int_option(o, "steps", 0));
    adam.step(options.lr);
    std::vector<torch::Tensor> new_avg, new_avg_sq;
    for (const auto& kv : adam.state())
      (kv.first.rfind("exp_avg_sq.", 0) == 0 ? new_avg_sq : new_avg).push_back(kv.second);
    Napi::Env env = info.Env();
    auto out = Napi::Object::New(env);
    out.Set("params", float_list(env, params));
    out.Set("expAvg", float_list(env, new_avg));
    out.Set("expAvgSq", float_list(env, new_avg_sq));
    out.Set("steps", static_cast<double>(adam.steps()));
    out.Set("fused", adam.fused());
    return out;
  });
}

// gradScalerStep({ grads, scale, growthTracker, skippedSteps, growthFactor, backoffFactor, growthInterval, device })
//   -> { grads (unscaled), foundInf, scale, growthTracker, skippedSteps }: the training loop's
//   unscale + update around one optimizer step, on `device` (default 'cpu'; CUDA: the ATen kernels).
Napi::Value GradScalerStep(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    auto grads = float_tensors(o.Get("grads"), "grads");
    const auto device = parse_device(string_option(o, "device", "cpu"));
    for (auto& g : grads) g = g.to(device);
    GradScalerOptions options;
    options.init_scale = number_option(o, "scale", options.init_scale);
    options.growth_factor = number_option(o, "growthFactor", options.growth_factor);
    options.backoff_factor = number_option(o, "backoffFactor", options.backoff_factor);
    options.growth_interval = int_option(o, "growthInterval", options.growth_interval);
    GradScaler scaler(options, device);
    scaler.set_state(options.init_scale, int_option(o, "growthTracker", 0), int_option(o, "skippedSteps", 0));
    scaler.unscale(grads);
    const bool found_inf = scaler.found_inf();
    scaler.update();
    Napi::Env env = info.Env();
    auto out = Napi::Object::New(env);
    out.Set("grads", float_list(env, grads));
    out.Set("foundInf", found_inf);
    out.Set("scale", scaler.scale_value());
    out.Set("growthTracker", static_cast<double>(scaler.growth_tracker()));
    out.Set("skippedSteps", static_cast<double>(scaler.skipped_steps()));
    return out;
  });
}

// trainingConvolution({ input, weight, gradOutput, stride, padding, groups, channelsLast })
//   -> { output, gradInput, gradWeight, products }: conv(input) as a training pass runs it (on this
//   thread, with the current setTrainingConvolutions), then backward from gradOutput; `products`:
//   whether it ran as oneDNN matrix products (native/pointwise_matmul.h).
Napi::Value TrainingConvolution(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    auto x = float_tensors(o.Get("input"), "input").at(0);
    auto w = float_tensors(o.Get("weight"), "weight").at(0);
    auto dy = float_tensors(o.Get("gradOutput"), "gradOutput").at(0);
    if (x.dim() != 4 || w.dim() != 4) throw std::invalid_argument("input and weight must be 4-d");
    const int64_t groups = int_option(o, "groups", 1);
    auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(w.size(1) * groups, w.size(0), {w.size(2), w.size(3)})
                                      .stride(int_option(o, "stride", 1))
                                      .padding(int_option(o, "padding", 0))
                                      .groups(groups)
                                      .bias(false));
    {
      torch::NoGradGuard no_grad;
      conv->weight.copy_(w);
    }
    if (bool_option(o, "channelsLast", true)) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    x.requires_grad_(true);
    const auto before = pointwise_matmul_calls();
    auto y = training_conv(conv, x);
    y.backward(dy);
    auto out = Napi::Object::New(info.Env());
    out.Set("output", float_list(info.Env(), {y.detach()}).Get(0u));
    out.Set("gradInput", float_list(info.Env(), {x.grad()}).Get(0u));
    out.Set("gradWeight", float_list(info.Env(), {conv->weight.grad()}).Get(0u));
    out.Set("products", pointwise_matmul_calls() > before);
    return out;
  });
}

}  // namespace

void define_test_hooks(Napi::Env env, Napi::Object exports) {
  exports.Set("adamStep", Napi::Function::New(env, AdamStep));
  exports.Set("gradScalerStep", Napi::Function::New(env, GradScalerStep));
  exports.Set("trainingConvolution", Napi::Function::New(env, TrainingConvolution));
}

}  // namespace xt::napi
