#include "inception_v3.h"

#include <cmath>
#include <stdexcept>

#include "onednn_pool.h"

namespace xt {
namespace nn = torch::nn;
namespace F = torch::nn::functional;
using K2 = torch::ExpandingArray<2>;  // a (height, width) kernel or padding

namespace {

// Both on oneDNN in folded eval passes (native/onednn_pool.h).
torch::Tensor avg_pool_3x3_same(const torch::Tensor& x) {
  if (auto y = folded_pool(x, PoolKind::Average, {3, 3}, {1, 1}, {1, 1})) return *y;
  return F::avg_pool2d(x, F::AvgPool2dFuncOptions(3).stride(1).padding(1));
}

torch::Tensor max_pool_3x3_stride2(const torch::Tensor& x) {
  if (auto y = folded_pool(x, PoolKind::Max, {3, 3}, {2, 2}, {0, 0})) return *y;
  return F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2));
}

// torch.nn.init.trunc_normal_: sample N(mean, std) restricted to [a, b] by inverting the CDF.
void trunc_normal_(torch::Tensor t, double mean, double std, double a, double b) {
  auto norm_cdf = [](double v) { return (1.0 + std::erf(v / std::sqrt(2.0))) / 2.0; };
  const double lo = norm_cdf((a - mean) / std);
  const double hi = norm_cdf((b - mean) / std);
  t.uniform_(2 * lo - 1, 2 * hi - 1);
  t.erfinv_();
  t.mul_(std * std::sqrt(2.0));
  t.add_(mean);
  t.clamp_(a, b);
}

}  // namespace

BasicConv2dImpl::BasicConv2dImpl(int64_t in_channels, int64_t out_channels, torch::ExpandingArray<2> kernel,
                                 torch::ExpandingArray<2> stride, torch::ExpandingArray<2> padding)
    : torch::nn::Module("BasicConv2d") {
  conv = register_module(
      "conv",
      nn::Conv2d(nn::Conv2dOptions(in_channels, out_channels, kernel).stride(stride).padding(padding).bias(false)));
  bn = register_module("bn", nn::BatchNorm2d(nn::BatchNorm2dOptions(out_channels).eps(0.001)));
}

torch::Tensor BasicConv2dImpl::forward(torch::Tensor x) {
  return conv_bn_relu(conv, bn, x, [](torch::Tensor t) { return t.relu_(); });
}

InceptionAImpl::InceptionAImpl(int64_t in, int64_t pool_features) : torch::nn::Module("InceptionA") {
  branch1x1 = register_module("branch1x1", BasicConv2d(in, 64, 1));
  branch5x5_1 = register_module("branch5x5_1", BasicConv2d(in, 48, 1));
  branch5x5_2 = register_module("branch5x5_2", BasicConv2d(48, 64, 5, 1, 2));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", BasicConv2d(in, 64, 1));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", BasicConv2d(64, 96, 3, 1, 1));
  branch3x3dbl_3 = register_module("branch3x3dbl_3", BasicConv2d(96, 96, 3, 1, 1));
  branch_pool = register_module("branch_pool", BasicConv2d(in, pool_features, 1));
}

torch::Tensor InceptionAImpl::forward(torch::Tensor x) {
  auto b1 = branch1x1(x);
  auto b5 = branch5x5_2(branch5x5_1(x));
  auto b3 = branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)));
  auto bp = branch_pool(avg_pool_3x3_same(x));
  return torch::cat({b1, b5, b3, bp}, 1);
}

InceptionBImpl::InceptionBImpl(int64_t in) : torch::nn::Module("InceptionB") {
  branch3x3 = register_module("branch3x3", BasicConv2d(in, 384, 3, 2));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", BasicConv2d(in, 64, 1));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", BasicConv2d(64, 96, 3, 1, 1));
  branch3x3dbl_3 = register_module("branch3x3dbl_3", BasicConv2d(96, 96, 3, 2));
}

torch::Tensor InceptionBImpl::forward(torch::Tensor x) {
  auto b3 = branch3x3(x);
  auto bd = branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)));
  return torch::cat({b3, bd, max_pool_3x3_stride2(x)}, 1);
}

InceptionCImpl::InceptionCImpl(int64_t in, int64_t c7) : torch::nn::Module("InceptionC") {
  branch1x1 = register_module("branch1x1", BasicConv2d(in, 192, 1));
  branch7x7_1 = register_module("branch7x7_1", BasicConv2d(in, c7, 1));
  branch7x7_2 = register_module("branch7x7_2", BasicConv2d(c7, c7, K2({1, 7}), 1, K2({0, 3})));
  branch7x7_3 = register_module("branch7x7_3", BasicConv2d(c7, 192, K2({7, 1}), 1, K2({3, 0})));
  branch7x7dbl_1 = register_module("branch7x7dbl_1", BasicConv2d(in, c7, 1));
  branch7x7dbl_2 = register_module("branch7x7dbl_2", BasicConv2d(c7, c7, K2({7, 1}), 1, K2({3, 0})));
  branch7x7dbl_3 = register_module("branch7x7dbl_3", BasicConv2d(c7, c7, K2({1, 7}), 1, K2({0, 3})));
  branch7x7dbl_4 = register_module("branch7x7dbl_4", BasicConv2d(c7, c7, K2({7, 1}), 1, K2({3, 0})));
  branch7x7dbl_5 = register_module("branch7x7dbl_5", BasicConv2d(c7, 192, K2({1, 7}), 1, K2({0, 3})));
  branch_pool = register_module("branch_pool", BasicConv2d(in, 192, 1));
}

torch::Tensor InceptionCImpl::forward(torch::Tensor x) {
  auto b1 = branch1x1(x);
  auto b7 = branch7x7_3(branch7x7_2(branch7x7_1(x)));
  auto bd = branch7x7dbl_5(branch7x7dbl_4(branch7x7dbl_3(branch7x7dbl_2(branch7x7dbl_1(x)))));
  auto bp = branch_pool(avg_pool_3x3_same(x));
  return torch::cat({b1, b7, bd, bp}, 1);
}

InceptionDImpl::InceptionDImpl(int64_t in) : torch::nn::Module("InceptionD") {
  branch3x3_1 = register_module("branch3x3_1", BasicConv2d(in, 192, 1));
  branch3x3_2 = register_module("branch3x3_2", BasicConv2d(192, 320, 3, 2));
  branch7x7x3_1 = register_module("branch7x7x3_1", BasicConv2d(in, 192, 1));
  branch7x7x3_2 = register_module("branch7x7x3_2", BasicConv2d(192, 192, K2({1, 7}), 1, K2({0, 3})));
  branch7x7x3_3 = register_module("branch7x7x3_3", BasicConv2d(192, 192, K2({7, 1}), 1, K2({3, 0})));
  branch7x7x3_4 = register_module("branch7x7x3_4", BasicConv2d(192, 192, 3, 2));
}

torch::Tensor InceptionDImpl::forward(torch::Tensor x) {
  auto b3 = branch3x3_2(branch3x3_1(x));
  auto b7 = branch7x7x3_4(branch7x7x3_3(branch7x7x3_2(branch7x7x3_1(x))));
  return torch::cat({b3, b7, max_pool_3x3_stride2(x)}, 1);
}

InceptionEImpl::InceptionEImpl(int64_t in) : torch::nn::Module("InceptionE") {
  branch1x1 = register_module("branch1x1", BasicConv2d(in, 320, 1));
  branch3x3_1 = register_module("branch3x3_1", BasicConv2d(in, 384, 1));
  branch3x3_2a = register_module("branch3x3_2a", BasicConv2d(384, 384, K2({1, 3}), 1, K2({0, 1})));
  branch3x3_2b = register_module("branch3x3_2b", BasicConv2d(384, 384, K2({3, 1}), 1, K2({1, 0})));
  branch3x3dbl_1 = register_module("branch3x3dbl_1", BasicConv2d(in, 448, 1));
  branch3x3dbl_2 = register_module("branch3x3dbl_2", BasicConv2d(448, 384, 3, 1, 1));
  branch3x3dbl_3a = register_module("branch3x3dbl_3a", BasicConv2d(384, 384, K2({1, 3}), 1, K2({0, 1})));
  branch3x3dbl_3b = register_module("branch3x3dbl_3b", BasicConv2d(384, 384, K2({3, 1}), 1, K2({1, 0})));
  branch_pool = register_module("branch_pool", BasicConv2d(in, 192, 1));
}

torch::Tensor InceptionEImpl::forward(torch::Tensor x) {
  auto b1 = branch1x1(x);
  auto s = branch3x3_1(x);
  auto b3 = torch::cat({branch3x3_2a(s), branch3x3_2b(s)}, 1);
  auto d = branch3x3dbl_2(branch3x3dbl_1(x));
  auto bd = torch::cat({branch3x3dbl_3a(d), branch3x3dbl_3b(d)}, 1);
  auto bp = branch_pool(avg_pool_3x3_same(x));
  return torch::cat({b1, b3, bd, bp}, 1);
}

InceptionAuxImpl::InceptionAuxImpl(int64_t in, int64_t num_classes) : torch::nn::Module("InceptionAux") {
  conv0 = register_module("conv0", BasicConv2d(in, 128, 1));
  conv1 = register_module("conv1", BasicConv2d(128, 768, 5));
  fc = register_module("fc", nn::Linear(768, num_classes));
}

torch::Tensor InceptionAuxImpl::forward(torch::Tensor x) {
  x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(5).stride(3));
  x = conv1(conv0(x));
  x = F::adaptive_avg_pool2d(x, F::AdaptiveAvgPool2dFuncOptions({1, 1}));
  return fc(torch::flatten(x, 1));
}

InceptionV3Impl::InceptionV3Impl(const InceptionV3Options& options) : Network("InceptionV3"), options_(options) {
  if (options.num_classes < 1) throw std::invalid_argument("num_classes must be >= 1");
  if (options.dropout < 0 || options.dropout >= 1) throw std::invalid_argument("dropout must be in [0, 1)");
  Conv2d_1a_3x3 = register_module("Conv2d_1a_3x3", BasicConv2d(3, 32, 3, 2));
  Conv2d_2a_3x3 = register_module("Conv2d_2a_3x3", BasicConv2d(32, 32, 3));
  Conv2d_2b_3x3 = register_module("Conv2d_2b_3x3", BasicConv2d(32, 64, 3, 1, 1));
  maxpool1 = register_module("maxpool1", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)));
  Conv2d_3b_1x1 = register_module("Conv2d_3b_1x1", BasicConv2d(64, 80, 1));
  Conv2d_4a_3x3 = register_module("Conv2d_4a_3x3", BasicConv2d(80, 192, 3));
  maxpool2 = register_module("maxpool2", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)));
  Mixed_5b = register_module("Mixed_5b", InceptionA(192, 32));
  Mixed_5c = register_module("Mixed_5c", InceptionA(256, 64));
  Mixed_5d = register_module("Mixed_5d", InceptionA(288, 64));
  Mixed_6a = register_module("Mixed_6a", InceptionB(288));
  Mixed_6b = register_module("Mixed_6b", InceptionC(768, 128));
  Mixed_6c = register_module("Mixed_6c", InceptionC(768, 160));
  Mixed_6d = register_module("Mixed_6d", InceptionC(768, 160));
  Mixed_6e = register_module("Mixed_6e", InceptionC(768, 192));
  if (options.aux_logits) AuxLogits = register_module("AuxLogits", InceptionAux(768, options.num_classes));
  Mixed_7a = register_module("Mixed_7a", InceptionD(768));
  Mixed_7b = register_module("Mixed_7b", InceptionE(1280));
  Mixed_7c = register_module("Mixed_7c", InceptionE(2048));
  avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1})));
  dropout = register_module("dropout", nn::Dropout(nn::DropoutOptions(options.dropout)));
  fc = register_module("fc", nn::Linear(2048, options.num_classes));
  if (options.init_weights) init_weights();
  // Every BasicConv2d folds in eval passes, except the aux head's: it runs in training only.
  for (auto& item : named_modules("", /*include_self=*/false)) {
    if (item.key().rfind("AuxLogits", 0) == 0) continue;
    if (auto* basic = item.value()->as<BasicConv2dImpl>()) folding().add(basic->conv, basic->bn);
  }
}

void InceptionV3Impl::init_weights() {
  // As torchvision: every Conv2d and Linear weight ~ truncated N(0, 0.1) in [-2, 2], except the
  // aux classifier's fc (std 0.001). torchvision sets stddev 0.01 on AuxLogits.conv1, but that is a
  // BasicConv2d and its loop reads the attribute from the inner Conv2d, so that conv gets 0.1 too.
  torch::NoGradGuard no_grad;
  for (auto& item : named_modules("", /*include_self=*/false)) {
    const auto& module = item.value();
    if (auto* c = module->as<nn::Conv2d>()) {
      trunc_normal_(c->weight, 0.0, 0.1, -2.0, 2.0);
    } else if (auto* l = module->as<nn::Linear>()) {
      trunc_normal_(l->weight, 0.0, item.key() == "AuxLogits.fc" ? 0.001 : 0.1, -2.0, 2.0);
    } else if (auto* b = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(b->weight);
      nn::init::zeros_(b->bias);
    }
  }
}

torch::Tensor InceptionV3Impl::transform_input(const torch::Tensor& x) const {
  // Re-normalise ImageNet-normalised input to the (x - 0.5) / 0.5 convention of the Google weights.
  auto ch0 = x.slice(1, 0, 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5;
  auto ch1 = x.slice(1, 1, 2) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5;
  auto ch2 = x.slice(1, 2, 3) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5;
  return torch::cat({ch0, ch1, ch2}, 1);
}

NetworkOutput InceptionV3Impl::forward_impl(torch::Tensor x) {
  if (options_.transform_input) x = transform_input(x);
  x = Conv2d_1a_3x3(x);       // N x 32 x 149 x 149
  x = Conv2d_2a_3x3(x);       // N x 32 x 147 x 147
  x = Conv2d_2b_3x3(x);       // N x 64 x 147 x 147
  x = max_pool(maxpool1, x);  // N x 64 x 73 x 73
  x = Conv2d_3b_1x1(x);       // N x 80 x 73 x 73
  x = Conv2d_4a_3x3(x);       // N x 192 x 71 x 71
  x = max_pool(maxpool2, x);  // N x 192 x 35 x 35
  x = Mixed_5b(x);            // N x 256 x 35 x 35
  x = Mixed_5c(x);            // N x 288 x 35 x 35
  x = Mixed_5d(x);            // N x 288 x 35 x 35
  x = Mixed_6a(x);            // N x 768 x 17 x 17
  x = Mixed_6b(x);
  x = Mixed_6c(x);
  x = Mixed_6d(x);
  x = Mixed_6e(x);  // N x 768 x 17 x 17
  // The aux head runs in training, where its logits feed the loss (and in summaries, to show it).
  torch::Tensor aux;
  if (AuxLogits && (is_training() || StageRecording::active())) aux = AuxLogits(x);
  if (!is_training()) aux = torch::Tensor();
  x = Mixed_7a(x);  // N x 1280 x 8 x 8
  x = Mixed_7b(x);  // N x 2048 x 8 x 8
  x = Mixed_7c(x);
  x = avgpool(x);  // N x 2048 x 1 x 1
  x = dropout(x);
  x = fc(torch::flatten(x, 1));  // N x num_classes
  return {x, aux};
}

std::shared_ptr<Network> make_inception_v3(const InceptionV3Options& options) {
  return std::make_shared<InceptionV3Impl>(options);
}

}  // namespace xt
