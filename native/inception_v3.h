// Inception V3 exactly as torchvision's models/inception.py builds it: the same modules under the
// same names, BatchNorm eps 0.001, the auxiliary classifier (training mode only), transform_input,
// and torchvision's truncated-normal initialisation.
#pragma once

#include "network.h"

namespace xt {

struct InceptionV3Options {
  int64_t num_classes = 1000;
  bool aux_logits = true;
  bool transform_input = false;
  double dropout = 0.5;
  bool init_weights = true;
};

// conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; the BatchNorm folds into the conv in eval.
class BasicConv2dImpl : public torch::nn::Module {
 public:
  BasicConv2dImpl(int64_t in_channels, int64_t out_channels, torch::ExpandingArray<2> kernel,
                  torch::ExpandingArray<2> stride = 1, torch::ExpandingArray<2> padding = 0);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(BasicConv2d);

// Mixed_5b..5d: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avgpool -> 1x1.
class InceptionAImpl : public torch::nn::Module {
 public:
  InceptionAImpl(int64_t in_channels, int64_t pool_features);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d branch1x1{nullptr}, branch5x5_1{nullptr}, branch5x5_2{nullptr}, branch3x3dbl_1{nullptr},
      branch3x3dbl_2{nullptr}, branch3x3dbl_3{nullptr}, branch_pool{nullptr};
};
TORCH_MODULE(InceptionA);

// Mixed_6a: grid reduction 35 -> 17.
class InceptionBImpl : public torch::nn::Module {
 public:
  explicit InceptionBImpl(int64_t in_channels);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d branch3x3{nullptr}, branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr}, branch3x3dbl_3{nullptr};
};
TORCH_MODULE(InceptionB);

// Mixed_6b..6e: factorised 7x7 convolutions.
class InceptionCImpl : public torch::nn::Module {
 public:
  InceptionCImpl(int64_t in_channels, int64_t channels_7x7);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d branch1x1{nullptr}, branch7x7_1{nullptr}, branch7x7_2{nullptr}, branch7x7_3{nullptr},
      branch7x7dbl_1{nullptr}, branch7x7dbl_2{nullptr}, branch7x7dbl_3{nullptr}, branch7x7dbl_4{nullptr},
      branch7x7dbl_5{nullptr}, branch_pool{nullptr};
};
TORCH_MODULE(InceptionC);

// Mixed_7a: grid reduction 17 -> 8.
class InceptionDImpl : public torch::nn::Module {
 public:
  explicit InceptionDImpl(int64_t in_channels);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d branch3x3_1{nullptr}, branch3x3_2{nullptr}, branch7x7x3_1{nullptr}, branch7x7x3_2{nullptr},
      branch7x7x3_3{nullptr}, branch7x7x3_4{nullptr};
};
TORCH_MODULE(InceptionD);

// Mixed_7b, 7c: expanded filter banks (1x3 and 3x1 side by side).
class InceptionEImpl : public torch::nn::Module {
 public:
  explicit InceptionEImpl(int64_t in_channels);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d branch1x1{nullptr}, branch3x3_1{nullptr}, branch3x3_2a{nullptr}, branch3x3_2b{nullptr},
      branch3x3dbl_1{nullptr}, branch3x3dbl_2{nullptr}, branch3x3dbl_3a{nullptr}, branch3x3dbl_3b{nullptr},
      branch_pool{nullptr};
};
TORCH_MODULE(InceptionE);

// The auxiliary classifier on Mixed_6e's output.
class InceptionAuxImpl : public torch::nn::Module {
 public:
  InceptionAuxImpl(int64_t in_channels, int64_t num_classes);
  torch::Tensor forward(torch::Tensor x);
  BasicConv2d conv0{nullptr}, conv1{nullptr};
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(InceptionAux);

class InceptionV3Impl : public Network {
 public:
  explicit InceptionV3Impl(const InceptionV3Options& options);

  std::string model_name() const override { return "inception_v3"; }
  std::string display_name() const override { return "InceptionV3"; }
  int64_t min_input_size() const override { return 75; }
  std::vector<std::string> training_only_stages() const override { return {"AuxLogits"}; }
  std::vector<std::string> classifier_modules() const override { return {"fc", "AuxLogits.fc"}; }

 protected:
  NetworkOutput forward_impl(torch::Tensor x) override;

 private:
  void init_weights();
  torch::Tensor transform_input(const torch::Tensor& x) const;

  InceptionV3Options options_;
  // The top-level stages, in forward order (Stage: summaries see each output).
  Stage<BasicConv2d> Conv2d_1a_3x3{nullptr}, Conv2d_2a_3x3{nullptr}, Conv2d_2b_3x3{nullptr}, Conv2d_3b_1x1{nullptr},
      Conv2d_4a_3x3{nullptr};
  Stage<torch::nn::MaxPool2d> maxpool1{nullptr}, maxpool2{nullptr};
  Stage<InceptionA> Mixed_5b{nullptr}, Mixed_5c{nullptr}, Mixed_5d{nullptr};
  Stage<InceptionB> Mixed_6a{nullptr};
  Stage<InceptionC> Mixed_6b{nullptr}, Mixed_6c{nullptr}, Mixed_6d{nullptr}, Mixed_6e{nullptr};
  Stage<InceptionAux> AuxLogits{nullptr};
  Stage<InceptionD> Mixed_7a{nullptr};
  Stage<InceptionE> Mixed_7b{nullptr}, Mixed_7c{nullptr};
  Stage<torch::nn::AdaptiveAvgPool2d> avgpool{nullptr};
  Stage<torch::nn::Dropout> dropout{nullptr};
  Stage<torch::nn::Linear> fc{nullptr};
};

std::shared_ptr<Network> make_inception_v3(const InceptionV3Options& options);

}  // namespace xt
