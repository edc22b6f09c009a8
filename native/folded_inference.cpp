#include "folded_inference.h"

#include <stdexcept>

namespace xt {
namespace F = torch::nn::functional;

struct FoldedConv {
  const torch::nn::BatchNorm2dImpl* bn;  // the BatchNorm folded in (checked by conv_bn)
  F::Conv2dFuncOptions options;          // the convolution's geometry, with the folded bias
  torch::Tensor weight;
};

struct FoldedTable {
  std::unordered_map<const torch::nn::Conv2dImpl*, FoldedConv> convs;
};

namespace {

// The table active on this thread (set by FoldedInference::Scope).
thread_local const FoldedTable* active_table = nullptr;

FoldedConv fold(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn) {
  // Folded in double, then stored in the weights' dtype and the folded passes' memory format.
  const auto& w = conv.weight;
  const auto d = torch::kDouble;
  auto scale = (bn.running_var.to(d) + bn.options.eps()).rsqrt();
  if (bn.weight.defined()) scale = scale * bn.weight.to(d);
  auto bias = conv.bias.defined() ? conv.bias.to(d) : torch::zeros_like(scale);
  bias = (bias - bn.running_mean.to(d)) * scale;
  if (bn.bias.defined()) bias = bias + bn.bias.to(d);
  auto weight = (w.to(d) * scale.view({-1, 1, 1, 1})).to(w.scalar_type()).contiguous(folded_memory_format(w));
  const auto& o = conv.options;
  auto options = F::Conv2dFuncOptions()
                     .bias(bias.to(w.scalar_type()))
                     .stride(o.stride())
                     .padding(o.padding())
                     .dilation(o.dilation())
                     .groups(o.groups());
  return FoldedConv{&bn, options, weight};
}

}  // namespace

at::MemoryFormat folded_memory_format(const torch::Tensor& x) {
  return x.is_cpu() && x.dim() == 4 ? at::MemoryFormat::ChannelsLast : x.suggest_memory_format();
}

void FoldedInference::add(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn) {
  if (!conv || !bn) throw std::invalid_argument("FoldedInference::add needs a convolution and a BatchNorm");
  if (!bn->options.track_running_stats()) {
    throw std::invalid_argument("cannot fold a BatchNorm without running statistics into its convolution");
  }
  // get_enum_name works on both c10::variant (libtorch 1.13) and std::variant (2.x, where c10's
  // variant helpers were removed).
  if (torch::enumtype::get_enum_name(conv->options.padding_mode()) != std::string("kZeros")) {
    throw std::invalid_argument("cannot fold a BatchNorm into a convolution whose padding mode is not zeros");
  }
  if (conv->options.out_channels() != bn->options.num_features()) {
    throw std::invalid_argument("cannot fold a BatchNorm of " + std::to_string(bn->options.num_features()) +
                                " channels into a convolution of " + std::to_string(conv->options.out_channels()));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  pairs_.push_back({conv, bn});
  table_.reset();
}

void FoldedInference::set_enabled(bool enabled) {
  enabled_ = enabled;
  if (!enabled) invalidate();
}

void FoldedInference::invalidate() {
  std::lock_guard<std::mutex> lock(mutex_);
  table_.reset();
}

int64_t FoldedInference::refreshes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return refreshes_;
}

std::vector<FoldedInference::Stamp> FoldedInference::stamps() const {
  std::vector<Stamp> out;
  out.reserve(pairs_.size() * 6);
  auto stamp = [&](const torch::Tensor& t) {
    if (!t.defined()) {
      out.push_back({nullptr, nullptr, 0});
    } else {
      // An inference tensor has no version counter (and cannot change outside inference mode).
      out.push_back({t.unsafeGetTensorImpl(), t.data_ptr(), t.is_inference() ? 0 : t._version()});
    }
  };
  for (const auto& p : pairs_) {
    stamp(p.conv->weight);
    stamp(p.conv->bias);
    stamp(p.bn->weight);
    stamp(p.bn->bias);
    stamp(p.bn->running_mean);
    stamp(p.bn->running_var);
  }
  return out;
}

std::shared_ptr<const FoldedTable> FoldedInference::current() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto now = stamps();
  if (table_ && now == table_stamps_) return table_;
  // The copy is plain data: made outside inference mode (so that no-grad callers may use it too)
  // and without recording gradients.
  c10::InferenceMode normal_tensors(false);
  torch::NoGradGuard no_grad;
  auto table = std::make_shared<FoldedTable>();
  for (const auto& p : pairs_) table->convs.emplace(p.conv.get(), fold(*p.conv, *p.bn));
  table_ = std::move(table);
  table_stamps_ = std::move(now);
  refreshes_++;
  return table_;
}

FoldedInference::Scope::Scope(FoldedInference& folding) : table_(folding.current()), previous_(active_table) {
  active_table = table_.get();
}

FoldedInference::Scope::~Scope() { active_table = previous_; }

std::optional<torch::Tensor> run_folded(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn,
                                        const std::function<torch::Tensor()>& input) {
  if (!active_table) return std::nullopt;
  auto it = active_table->convs.find(&conv);
  // A model whose forward and declared pairs drifted apart would otherwise run unfolded silently.
  if (it == active_table->convs.end() || it->second.bn != &bn) {
    throw std::logic_error("a conv -> BatchNorm pair ran in a folded pass without being declared to folding()");
  }
  return F::conv2d(input(), it->second.weight, it->second.options);
}

}  // namespace xt
