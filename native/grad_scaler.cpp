#include "grad_scaler.h"

#include <cmath>
#include <stdexcept>

namespace xt {

namespace {

// libtorch gained CPU kernels for the AMP ops in 2.3.
constexpr bool kCpuAmpKernels = TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3);

}  // namespace

GradScaler::GradScaler(const GradScalerOptions& options, torch::Device device) : options_(options) {
  if (!(options.init_scale > 0)) throw std::invalid_argument("GradScaler init_scale must be positive");
  if (!(options.growth_factor > 1)) throw std::invalid_argument("GradScaler growth_factor must be greater than 1");
  if (!(options.backoff_factor > 0 && options.backoff_factor < 1))
    throw std::invalid_argument("GradScaler backoff_factor must be in (0, 1)");
  if (options.growth_interval < 1) throw std::invalid_argument("GradScaler growth_interval must be a positive integer");
  auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({1}, options.init_scale, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
  skipped_steps_ = torch::zeros({1}, f);
}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const { return options_.enabled ? loss * scale_ : loss; }

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

}  // namespace xt
