#include "xception.h"

#include <stdexcept>

namespace xt {
namespace nn = torch::nn;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, bool bias,
                int64_t groups = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(bias).groups(groups));
}

// A conv -> BatchNorm pair at the top level: two stages when a summary records them, otherwise
// one step that folded eval passes run as a single convolution.
torch::Tensor conv_bn_stages(const StageRecorder* record, const std::string& conv_name, nn::Conv2d& conv,
                             const std::string& bn_name, nn::BatchNorm2d& bn, torch::Tensor x) {
  if (!record) return conv_bn(conv, bn, x);
  x = record_stage(record, conv_name, counted(conv, x));
  return record_stage(record, bn_name, bn(x));
}

torch::Tensor conv_bn_stages(const StageRecorder* record, const std::string& conv_name, SeparableConv2d& conv,
                             const std::string& bn_name, nn::BatchNorm2d& bn, torch::Tensor x) {
  if (!record) return conv->forward_bn(x, bn);
  x = record_stage(record, conv_name, conv(x));
  return record_stage(record, bn_name, bn(x));
}

// Advances `it` to the BatchNorm the block's constructor puts right after each SeparableConv2d.
nn::BatchNorm2d bn_after(nn::Sequential& rep, nn::SequentialImpl::Iterator& it) {
  ++it;
  auto bn = it != rep->end() ? std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(it->ptr()) : nullptr;
  TORCH_CHECK(bn, "XceptionBlock: each SeparableConv2d in rep must be followed by a BatchNorm2d");
  return nn::BatchNorm2d(bn);
}

}  // namespace

SeparableConv2dImpl::SeparableConv2dImpl(int64_t in_channels, int64_t out_channels,
                                         IntermediateActivation activation)
    : torch::nn::Module("SeparableConv2d"), activation_(activation) {
  conv1 = register_module("conv1", conv(in_channels, in_channels, 3, 1, 1, false, in_channels));
  pointwise = register_module("pointwise", conv(in_channels, out_channels, 1, 1, 0, false));
}

torch::Tensor SeparableConv2dImpl::forward(torch::Tensor x) {
  return counted(pointwise, depthwise(x));
}

torch::Tensor SeparableConv2dImpl::forward_bn(torch::Tensor x, nn::BatchNorm2d& bn) {
  return conv_bn(pointwise, bn, depthwise(x));
}

torch::Tensor SeparableConv2dImpl::depthwise(torch::Tensor x) {
  x = counted(conv1, x);
  switch (activation_) {
    case IntermediateActivation::None: break;
    case IntermediateActivation::ReLU: x = torch::relu(x); break;
    case IntermediateActivation::ELU: x = torch::elu(x); break;
  }
  return x;
}

void SeparableConv2dImpl::fold_into(FoldedInference& folding, const nn::BatchNorm2d& bn) { folding.add(pointwise, bn); }

XceptionBlockImpl::XceptionBlockImpl(int64_t in_channels, int64_t out_channels, int64_t reps, int64_t stride,
                                     bool start_with_relu, bool grow_first, const XceptionOptions& options)
    : torch::nn::Module("XceptionBlock") {
  const auto act = options.intermediate_activation;
  rep = nn::Sequential();
  // The first ReLU must not work in place: the skip branch still reads the block's input.
  if (start_with_relu) rep->push_back(nn::ReLU(nn::ReLUOptions(false)));
  int64_t channels = in_channels;
  for (int64_t i = 0; i < reps; ++i) {
    // grow_first: the first SepConv changes the width; otherwise the last one does.
    const bool grows_here = grow_first ? i == 0 : i == reps - 1;
    const int64_t out = grows_here ? out_channels : channels;
    if (i > 0) rep->push_back(nn::ReLU(nn::ReLUOptions(true)));
    rep->push_back(SeparableConv2d(channels, out, act));
    rep->push_back(nn::BatchNorm2d(out));
    channels = out;
  }
  if (stride != 1) rep->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(stride).padding(1)));
  register_module("rep", rep);

  if (out_channels != in_channels || stride != 1) {
    skip = register_module("skip", conv(in_channels, out_channels, 1, stride, 0, options.notebook_variant));
    if (!options.notebook_variant) skipbn = register_module("skipbn", nn::BatchNorm2d(out_channels));
  }
}

torch::Tensor XceptionBlockImpl::forward(torch::Tensor x) {
  torch::Tensor shortcut = x;
  if (skip) shortcut = skipbn ? conv_bn(skip, skipbn, x) : counted(skip, x);
  // `rep` is a Sequential for its module names, run step by step so that each SeparableConv2d
  // takes the BatchNorm after it (which the constructor always puts there).
  torch::Tensor y = x;
  for (auto it = rep->begin(); it != rep->end(); ++it) {
    if (auto* sep = it->ptr()->as<SeparableConv2dImpl>()) {
      auto bn = bn_after(rep, it);
      y = sep->forward_bn(y, bn);
    } else {
      y = it->forward<torch::Tensor>(y);
    }
  }
  return y + shortcut;
}

void XceptionBlockImpl::fold_into(FoldedInference& folding) {
  if (skip && skipbn) folding.add(skip, skipbn);
  for (auto it = rep->begin(); it != rep->end(); ++it) {
    if (auto* sep = it->ptr()->as<SeparableConv2dImpl>()) sep->fold_into(folding, bn_after(rep, it));
  }
}

XceptionImpl::XceptionImpl(const XceptionOptions& options) : Network("Xception"), options_(options) {
  if (options.num_classes < 1) throw std::invalid_argument("numClasses must be a positive integer");
  if (options.middle_flow_blocks < 0) throw std::invalid_argument("middleFlowBlocks must be >= 0");
  if (options.dropout < 0 || options.dropout >= 1) throw std::invalid_argument("dropout must be in [0, 1)");
  const bool nb = options.notebook_variant;

  // Entry flow stem: 299 -> 149 -> 147 (the notebook variant pads: 299 -> 150 -> 150).
  conv1 = register_module("conv1", conv(3, 32, 3, 2, nb ? 1 : 0, nb));
  bn1 = register_module("bn1", nn::BatchNorm2d(32));
  act1 = register_module("act1", nn::ReLU(nn::ReLUOptions(true)));
  conv2 = register_module("conv2", conv(32, 64, 3, 1, nb ? 1 : 0, nb));
  bn2 = register_module("bn2", nn::BatchNorm2d(64));
  act2 = register_module("act2", nn::ReLU(nn::ReLUOptions(true)));

  auto add_block = [&](int64_t in, int64_t out, int64_t reps, int64_t stride, bool start_relu, bool grow_first) {
    const std::string name = "block" + std::to_string(blocks_.size() + 1);
    blocks_.push_back(register_module(name, XceptionBlock(in, out, reps, stride, start_relu, grow_first, options)));
  };
  // Entry flow.
  add_block(64, 128, 2, 2, false, true);
  add_block(128, 256, 2, 2, true, true);
  add_block(256, 728, 2, 2, true, true);
  // Middle flow.
  for (int64_t i = 0; i < options.middle_flow_blocks; ++i) add_block(728, 728, 3, 1, true, true);
  // Exit flow.
  add_block(728, 1024, 2, 2, true, false);

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
  conv3->fold_into(folding(), bn3);
  conv4->fold_into(folding(), bn4);

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

NetworkOutput XceptionImpl::forward_impl(torch::Tensor x, const StageRecorder* record) {
  x = conv_bn_stages(record, "conv1", conv1, "bn1", bn1, x);
  x = record_stage(record, "act1", act1(x));
  x = conv_bn_stages(record, "conv2", conv2, "bn2", bn2, x);
  x = record_stage(record, "act2", act2(x));
  for (size_t i = 0; i < blocks_.size(); ++i) {
    x = record_stage(record, "block" + std::to_string(i + 1), blocks_[i](x));
  }
  x = conv_bn_stages(record, "conv3", conv3, "bn3", bn3, x);
  x = record_stage(record, "act3", act3(x));
  x = conv_bn_stages(record, "conv4", conv4, "bn4", bn4, x);
  x = record_stage(record, "act4", act4(x));
  x = record_stage(record, "global_pool", global_pool(x));
  x = torch::flatten(x, 1);
  if (options_.dropout > 0) x = torch::dropout(x, options_.dropout, is_training());
  x = record_stage(record, "fc", counted(fc, x));
  return {x, torch::Tensor()};
}

std::shared_ptr<Network> make_xception(const XceptionOptions& options) {
  return std::make_shared<XceptionImpl>(options);
}

}  // namespace xt
