#include "folded_inference.h"

#include <stdexcept>
#include <utility>

#include "conv_padding.h"
#include "onednn_conv.h"

namespace xt {
namespace F = torch::nn::functional;

struct FoldedConv {
  const torch::nn::BatchNorm2dImpl* bn;  // the BatchNorm folded in (checked by conv_bn); null: none
  F::Conv2dFuncOptions options;          // the convolution's geometry, with the folded bias
  torch::Tensor weight;
  std::shared_ptr<const OnednnConv> onednn;  // the same convolution on oneDNN; null where unavailable
};

struct FoldedTable {
  std::unordered_map<const torch::nn::Conv2dImpl*, FoldedConv> convs;
};

namespace {

// The table active on this thread (set by FoldedInference::Scope).
thread_local const FoldedTable* active_table = nullptr;

// bn == nullptr: the convolution as it is (a depthwise convolution with no BatchNorm of its own),
// copied so that it can run on oneDNN with its weights reordered once.
FoldedConv fold(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl* bn) {
  // Folded in double, then stored in the weights' dtype and the folded passes' memory format.
  const auto& w = conv.weight;
  torch::Tensor weight = w.detach().clone(), bias = conv.bias.defined() ? conv.bias.detach().clone() : torch::Tensor();
  if (bn) {
    const auto d = torch::kDouble;
    auto scale = (bn->running_var.to(d) + bn->options.eps()).rsqrt();
    if (bn->weight.defined()) scale = scale * bn->weight.to(d);
    auto folded_bias = conv.bias.defined() ? conv.bias.to(d) : torch::zeros_like(scale);
    folded_bias = (folded_bias - bn->running_mean.to(d)) * scale;
    if (bn->bias.defined()) folded_bias = folded_bias + bn->bias.to(d);
    weight = (w.to(d) * scale.view({-1, 1, 1, 1})).to(w.scalar_type());
    bias = folded_bias.to(w.scalar_type());
  }
  weight = weight.contiguous(folded_memory_format(w));
  const auto& o = conv.options;
  auto options = F::Conv2dFuncOptions()
                     .bias(bias)
                     .stride(o.stride())
                     .padding(o.padding())
                     .dilation(o.dilation())
                     .groups(o.groups());
  // Explicit padding only ('same'/'valid' stay on libtorch's path).
  const auto padding = explicit_padding(o);
  auto onednn =
      padding.empty() ? nullptr : OnednnConv::create(weight, bias, *o.stride(), padding, *o.dilation(), o.groups());
  return FoldedConv{bn, options, weight, std::move(onednn)};
}

// conv(x) with the folded copy, and ReLU after it when asked: on oneDNN where it runs, else libtorch.
torch::Tensor run(const FoldedConv& folded, const torch::Tensor& x, bool relu) {
  if (folded.onednn) {
    if (auto out = folded.onednn->run(x, relu)) return *out;
  }
  auto out = F::conv2d(x, folded.weight, folded.options);
  return relu ? out.relu_() : out;
}

const FoldedConv& declared(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl* bn) {
  auto it = active_table->convs.find(&conv);
  // A model whose forward and declared pairs drifted apart would otherwise run unfolded silently.
  if (it == active_table->convs.end() || it->second.bn != bn) {
    throw std::logic_error(bn ? "a conv -> BatchNorm pair ran in a folded pass without being declared to folding()"
                              : "a convolution ran in a folded pass without being declared to folding().add_plain()");
  }
  return it->second;
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

void FoldedInference::add_plain(const torch::nn::Conv2d& conv) {
  if (!conv) throw std::invalid_argument("FoldedInference::add_plain needs a convolution");
  std::lock_guard<std::mutex> lock(mutex_);
  pairs_.push_back({conv, nullptr});
  table_.reset();
}

size_t FoldedInference::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t n = 0;
  for (const auto& p : pairs_) n += p.bn ? 1 : 0;
  return n;
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
  const torch::Tensor none;
  for (const auto& p : pairs_) {
    stamp(p.conv->weight);
    stamp(p.conv->bias);
    stamp(p.bn ? p.bn->weight : none);
    stamp(p.bn ? p.bn->bias : none);
    stamp(p.bn ? p.bn->running_mean : none);
    stamp(p.bn ? p.bn->running_var : none);
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
  for (const auto& p : pairs_) table->convs.emplace(p.conv.get(), fold(*p.conv, p.bn ? p.bn.get() : nullptr));
  table_ = std::move(table);
  table_stamps_ = std::move(now);
  refreshes_++;
  return table_;
}

FoldedInference::Scope::Scope(FoldedInference& folding) : table_(folding.current()), previous_(active_table) {
  active_table = table_.get();
}

FoldedInference::Scope::Scope(std::shared_ptr<const FoldedTable> table)
    : table_(std::move(table)), previous_(active_table) {
  active_table = table_.get();
}

FoldedInference::Scope::~Scope() { active_table = previous_; }

bool in_folded_pass() { return active_table != nullptr; }

std::optional<torch::Tensor> run_folded(const torch::nn::Conv2dImpl& conv, const torch::nn::BatchNorm2dImpl& bn,
                                        const std::function<torch::Tensor()>& input, bool relu) {
  if (!active_table) return std::nullopt;
  const auto& folded = declared(conv, &bn);
  return run(folded, input(), relu);
}

std::optional<torch::Tensor> run_plain(const torch::nn::Conv2dImpl& conv, const torch::Tensor& x) {
  if (!active_table) return std::nullopt;
  return run(declared(conv, nullptr), x, /*relu=*/false);
}

}  // namespace xt
