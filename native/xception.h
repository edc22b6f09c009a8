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
  torch::Tensor forward(torch::Tensor x);
  // bn(forward(x)), with `bn` folded into the pointwise convolution in folded eval passes. (Not a
  // forward() overload: a Sequential holds modules with a single forward.)
  torch::Tensor forward_bn(torch::Tensor x, torch::nn::BatchNorm2d& bn);
  // Declares the pointwise -> bn pair to `folding`.
  void fold_into(FoldedInference& folding, const torch::nn::BatchNorm2d& bn);

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::Conv2d pointwise{nullptr};

 private:
  torch::Tensor depthwise(torch::Tensor x);  // conv1 and the intermediate activation
  IntermediateActivation activation_;
};
TORCH_MODULE(SeparableConv2d);

// A residual module: `rep` = [ReLU] -> (SepConv -> BN -> ReLU)... -> [MaxPool], plus a skip that
// is the identity or a strided 1x1 conv (+ BN).
class XceptionBlockImpl : public torch::nn::Module {
 public:
  XceptionBlockImpl(int64_t in_channels, int64_t out_channels, int64_t reps, int64_t stride,
                    bool start_with_relu, bool grow_first, const XceptionOptions& options);
  torch::Tensor forward(torch::Tensor x);
  // Declares the block's conv -> BatchNorm pairs to `folding`.
  void fold_into(FoldedInference& folding);

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

 protected:
  NetworkOutput forward_impl(torch::Tensor x, const StageRecorder* record) override;

 private:
  XceptionOptions options_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr}, bn4{nullptr};
  std::vector<XceptionBlock> blocks_;  // block1 .. blockN, entry + middle + exit
  SeparableConv2d conv3{nullptr}, conv4{nullptr};
  torch::nn::ReLU act1{nullptr}, act2{nullptr}, act3{nullptr}, act4{nullptr};
  torch::nn::AdaptiveAvgPool2d global_pool{nullptr};
  torch::nn::Linear fc{nullptr};
};

std::shared_ptr<Network> make_xception(const XceptionOptions& options);

}  // namespace xt
