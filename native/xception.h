// Xception (Chollet 2017): entry, middle and exit flows built from depthwise separable
// convolutions with linear residual connections. Module and parameter names follow timm's
// `legacy_xception`, so state dicts move between this addon and PyTorch unchanged.
#pragma once

#include "network.h"

namespace xt {

// What sits between the depthwise and the pointwise convolution (paper Section 4.7).
enum class IntermediateActivation { None, ReLU, ELU };

struct XceptionOptions {
  int64_t num_classes = 1000;
  IntermediateActivation intermediate_activation = IntermediateActivation::None;
  int64_t middle_flow_blocks = 8;
  double dropout = 0.0;
  // 'notebook' reproduces the reference notebook: stem convs with bias and padding 1,
  // 1x1 skip convs with bias and no BatchNorm.
  bool notebook_variant = false;
};

// Depthwise 3x3 (`conv1`) then pointwise 1x1 (`pointwise`), both without bias.
class SeparableConv2dImpl : public torch::nn::Module {
 public:
  SeparableConv2dImpl(int64_t in_channels, int64_t out_channels, IntermediateActivation activation);
  torch::Tensor forward(torch::Tensor x) { return training_conv(pointwise, depthwise(x)); }
  torch::Tensor depthwise(torch::Tensor x);  // conv1 and the intermediate activation

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Conv2d pointwise{nullptr};

 private:
  IntermediateActivation activation_;
};
TORCH_MODULE(SeparableConv2d);

// One unit of a block (a box of the paper's Figure 5): [ReLU] -> SeparableConv2d -> BatchNorm2d.
struct SeparableUnit {
  torch::nn::ReLU relu{nullptr};  // absent in the first unit of a block that does not start with one
  SeparableConv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};

// A residual module: the units, a max-pool when strided, plus a skip that is the identity or a
// strided 1x1 conv (+ BN). Its forward and its fold pairs both come from `units_`; `rep` only
// registers the same modules under timm's names (rep.0, rep.1, ...).
class XceptionBlockImpl : public torch::nn::Module {
 public:
  // grow_first: the first separable conv changes the width (else the last one does, as in the
  // exit flow); start_with_relu: false where the previous layer's ReLU already ran.
  XceptionBlockImpl(int64_t in_channels, int64_t out_channels, int64_t reps, int64_t stride, bool start_with_relu,
                    bool grow_first, const XceptionOptions& options);
  torch::Tensor forward(torch::Tensor x);
  // Declares the block's conv -> BatchNorm pairs to `folding`.
  void fold_into(FoldedInference& folding);

 private:
  std::vector<SeparableUnit> units_;
  torch::nn::MaxPool2d pool_{nullptr};
  torch::nn::Sequential rep{nullptr};
  torch::nn::Conv2d skip{nullptr};
  torch::nn::BatchNorm2d skipbn{nullptr};
};
TORCH_MODULE(XceptionBlock);

class XceptionImpl : public Network {
 public:
  explicit XceptionImpl(const XceptionOptions& options);

  std::string model_name() const override { return "xception"; }
  std::string display_name() const override { return "Xception"; }
  int64_t min_input_size() const override;
  std::vector<std::string> classifier_modules() const override { return {"fc"}; }

 protected:
  NetworkOutput forward_impl(torch::Tensor x) override;

 private:
  XceptionOptions options_;
  // The top-level stages (Stage: summaries see each output).
  Stage<torch::nn::Conv2d> conv1{nullptr}, conv2{nullptr};
  Stage<torch::nn::BatchNorm2d> bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, bn4{nullptr};
  std::vector<Stage<XceptionBlock>> blocks_;  // block1 .. blockN, entry + middle + exit
  Stage<SeparableConv2d> conv3{nullptr}, conv4{nullptr};
  Stage<torch::nn::ReLU> act1{nullptr}, act2{nullptr}, act3{nullptr}, act4{nullptr};
  Stage<torch::nn::AdaptiveAvgPool2d> global_pool{nullptr};
  Stage<torch::nn::Linear> fc{nullptr};
};

std::shared_ptr<Network> make_xception(const XceptionOptions& options);

}  // namespace xt
