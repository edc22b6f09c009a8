#include "xception.h"

#include <stdexcept>

#include "onednn_pool.h"

namespace xt {
namespace nn = torch::nn;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool bias,
                int64_t groups = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(bias).groups(groups));
}

// bn(separable(x)), with `bn` folded into the pointwise convolution in folded eval passes, and
// there a ReLU after it fused too when `relu` (the caller then skips its own; outside folded passes
// `relu` changes nothing). Holders plain or Stage<...>, as conv_bn() takes them.
template <class SeparableHolder, class BatchNormHolder>
torch::Tensor separable_conv_bn(SeparableHolder& separable, BatchNormHolder& bn, const torch::Tensor& x,
                                bool relu = false) {
  auto depthwise = [&] { return separable->depthwise(x); };
  if (auto folded = run_folded(*separable->pointwise, *bn, depthwise, relu)) return *folded;
  return bn(separable(x));
}

}  // namespace

SeparableConv2dImpl::SeparableConv2dImpl(int64_t in_channels, int64_t out_channels, IntermediateActivation activation)
    : torch::nn::Module("SeparableConv2d"), activation_(activation) {
  conv1 = register_module("conv1", conv(in_channels, in_channels, 3, 1, 1, false, in_channels));
  pointwise = register_module("pointwise", conv(in_channels, out_channels, 1, 1, 0, false));
}

torch::Tensor SeparableConv2dImpl::depthwise(torch::Tensor x) {
  x = conv_plain(conv1, x);
  switch (activation_) {
    case IntermediateActivation::None: break;
    case IntermediateActivation::ReLU: x = torch::relu(x); break;
    case IntermediateActivation::ELU: x = torch::elu(x); break;
  }
  return x;
}

XceptionBlockImpl::XceptionBlockImpl(int64_t in_channels, int64_t out_channels, int64_t reps, int64_t stride,
                                     bool start_with_relu, bool grow_first, const XceptionOptions& options)
    : torch::nn::Module("XceptionBlock") {
  rep = register_module("rep", nn::Sequential());
  int64_t channels = in_channels;
  for (int64_t i = 0; i < reps; ++i) {
    // grow_first: the first SepConv changes the width; otherwise the last one does.
    const bool grows_here = grow_first ? i == 0 : i == reps - 1;
    const int64_t out = grows_here ? out_channels : channels;
    SeparableUnit unit;
    // The block's first ReLU must not work in place: the skip branch still reads the input.
    if (i > 0 || start_with_relu) unit.relu = nn::ReLU(nn::ReLUOptions(/*inplace=*/i > 0));
    unit.conv = SeparableConv2d(channels, out, options.intermediate_activation);
    unit.bn = nn::BatchNorm2d(out);
    if (unit.relu) rep->push_back(unit.relu);
    rep->push_back(unit.conv);
    rep->push_back(unit.bn);
    units_.push_back(unit);
    channels = out;
  }
  if (stride != 1) {
    pool_ = nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(stride).padding(1));
    rep->push_back(pool_);
  }

  if (out_channels != in_channels || stride != 1) {
    skip = register_module("skip", conv(in_channels, out_channels, 1, stride, 0, options.notebook_variant));
    if (!options.notebook_variant) skipbn = register_module("skipbn", nn::BatchNorm2d(out_channels));
  }
}

torch::Tensor XceptionBlockImpl::forward(torch::Tensor x) {
  torch::Tensor shortcut = x;
  if (skip && skipbn) {
    shortcut = conv_bn(skip, skipbn, x);
  } else if (skip) {
    shortcut = conv_plain(skip, x);
  }
  // In folded passes a unit's ReLU runs fused into the convolution before it, where there is one.
  const bool fuse = in_folded_pass();
  bool relu_done = false;
  for (size_t i = 0; i < units_.size(); ++i) {
    auto& unit = units_[i];
    if (unit.relu && !relu_done) x = unit.relu(x);
    relu_done = fuse && i + 1 < units_.size() && units_[i + 1].relu;
    x = separable_conv_bn(unit.conv, unit.bn, x, relu_done);
  }
  if (pool_) x = max_pool(pool_, x);
  return x + shortcut;
}

void XceptionBlockImpl::fold_into(FoldedInference& folding) {
  if (skip && skipbn) folding.add(skip, skipbn);
  if (skip && !skipbn) folding.add_plain(skip);
  for (auto& unit : units_) {
    folding.add_plain(unit.conv->conv1);
    folding.add(unit.conv->pointwise, unit.bn);
  }
}

XceptionImpl::XceptionImpl(const XceptionOptions& options) : Network("Xception"), options_(options) {
  if (options.num_classes < 1) throw std::invalid_argument("num_classes must be >= 1");
  if (options.middle_flow_blocks < 0) throw std::invalid_argument("middle_flow_blocks must be >= 0");
  if (options.dropout < 0 || options.dropout >= 1) throw std::invalid_argument("dropout must be in [0, 1)");
  const bool nb = options.notebook_variant;

  // Entry flow stem: 299 -> 149 -> 147 (the notebook variant pads: 299 -> 150 -> 150).
  conv1 = register_module("conv1", conv(3, 32, 3, 2, nb ? 1 : 0, nb));
  bn1 = register_module("bn1", nn::BatchNorm2d(32));
  act1 = register_module("act1", nn::ReLU(nn::ReLUOptions(true)));
  conv2 = register_module("conv2", conv(32, 64, 3, 1, nb ? 1 : 0, nb));
  bn2 = register_module("bn2", nn::BatchNorm2d(64));
  act2 = register_module("act2", nn::ReLU(nn::ReLUOptions(true)));

  auto add_block = [&](int64_t in, int64_t out, int64_t reps, int64_t stride, bool start_with_relu, bool grow_first) {
    const std::string name = "block" + std::to_string(blocks_.size() + 1);
    blocks_.push_back(
        register_module(name, XceptionBlock(in, out, reps, stride, start_with_relu, grow_first, options)));
  };
  // The paper's Figure 5, as timm's legacy_xception builds it. Entry flow:
  add_block(64, 128, /*reps=*/2, /*stride=*/2, /*start_with_relu=*/false, /*grow_first=*/true);
  add_block(128, 256, /*reps=*/2, /*stride=*/2, /*start_with_relu=*/true, /*grow_first=*/true);
  add_block(256, 728, /*reps=*/2, /*stride=*/2, /*start_with_relu=*/true, /*grow_first=*/true);
  // Middle flow, repeated eight times in the paper:
  for (int64_t i = 0; i < options.middle_flow_blocks; ++i) {
    add_block(728, 728, /*reps=*/3, /*stride=*/1, /*start_with_relu=*/true, /*grow_first=*/true);
  }
  // Exit flow:
  add_block(728, 1024, /*reps=*/2, /*stride=*/2, /*start_with_relu=*/true, /*grow_first=*/false);

  conv3 = register_module("conv3", SeparableConv2d(1024, 1536, options.intermediate_activation));
  bn3 = register_module("bn3", nn::BatchNorm2d(1536));
  act3 = register_module("act3", nn::ReLU(nn::ReLUOptions(true)));
  conv4 = register_module("conv4", SeparableConv2d(1536, 2048, options.intermediate_activation));
  bn4 = register_module("bn4", nn::BatchNorm2d(2048));
  act4 = register_module("act4", nn::ReLU(nn::ReLUOptions(true)));
  global_pool = register_module("global_pool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
  fc = register_module("fc", nn::Linear(2048, options.num_classes));

  folding().add(conv1, bn1);
  folding().add(conv2, bn2);
  for (auto& block : blocks_) block->fold_into(folding());
  folding().add_plain(conv3->conv1);
  folding().add(conv3->pointwise, bn3);
  folding().add_plain(conv4->conv1);
  folding().add(conv4->pointwise, bn4);

  // timm's legacy_xception initialisation: He-normal (fan_out) convs, BN weight 1 and bias 0,
  // PyTorch's default for the classifier.
  torch::NoGradGuard no_grad;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(c->weight, 0.0, torch::kFanOut, torch::kReLU);
    } else if (auto* b = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
}

int64_t XceptionImpl::min_input_size() const {
  // Paper stem: two unpadded 3x3 convs (the first strided) need at least 7 pixels; the notebook's
  // padded stem and every later (padded) stage accept any size.
  return options_.notebook_variant ? 1 : 7;
}

NetworkOutput XceptionImpl::forward_impl(torch::Tensor x) {
  x = conv_bn_relu(conv1, bn1, x, act1);  // entry flow stem
  x = conv_bn_relu(conv2, bn2, x, act2);
  for (auto& block : blocks_) x = block(x);  // entry, middle and exit flow blocks
  // The exit flow's ReLUs run fused into the convolutions in folded passes.
  const bool fuse = in_folded_pass();
  x = separable_conv_bn(conv3, bn3, x, fuse);
  if (!fuse) x = act3(x);
  x = separable_conv_bn(conv4, bn4, x, fuse);
  if (!fuse) x = act4(x);
  x = torch::flatten(global_pool(x), 1);
  if (options_.dropout > 0) x = torch::dropout(x, options_.dropout, is_training());
  return {fc(x), torch::Tensor()};
}

std::shared_ptr<Network> make_xception(const XceptionOptions& options) {
  return std::make_shared<XceptionImpl>(options);
}

}  // namespace xt
