#include "data.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace xt {
namespace F = torch::nn::functional;
using torch::indexing::Slice;

void Preprocessing::validate(int64_t image_size) const {
  auto positive = [](int64_t v, const char* name) {
    if (v < 1) throw std::invalid_argument(std::string(name) + " must be a positive integer");
  };
  positive(train_resize, "resize");
  positive(eval_resize, "evalResize");
  positive(crop, "crop");
  if (crop > train_resize) {
    throw std::invalid_argument("the crop (" + std::to_string(crop) + ") cannot be larger than the training resize (" +
                                std::to_string(train_resize) + ")");
  }
  if (crop > eval_resize) {
    throw std::invalid_argument("the crop (" + std::to_string(crop) + ") cannot be larger than the evaluation resize (" +
                                std::to_string(eval_resize) + ")");
  }
  for (double s : std) {
    if (!(s > 0)) throw std::invalid_argument("std must hold three positive numbers");
  }
  if (image_size < 1) throw std::invalid_argument("the dataset has no pixels");
}

ImageStore::ImageStore(torch::Tensor images, torch::Tensor labels, torch::Device device)
    : device_(device) {
  if (images.dim() != 4 || images.scalar_type() != torch::kUInt8) {
    throw std::invalid_argument("images must be uint8 [N, C, H, W]");
  }
  if (images.size(2) != images.size(3)) throw std::invalid_argument("images must be square");
  if (labels.dim() != 1 || labels.size(0) != images.size(0)) {
    throw std::invalid_argument("there must be one label per image");
  }
  images_ = images.to(device).contiguous();
  labels_ = labels.to(device, torch::kLong);
}

torch::Tensor ImageStore::labels(const torch::Tensor& indices) const {
  return labels_.index_select(0, indices.to(device_, torch::kLong));
}

torch::Tensor ImageStore::gather_resized(const torch::Tensor& indices, int64_t size) const {
  auto x = images_.index_select(0, indices.to(device_, torch::kLong)).to(torch::kFloat);
  if (size != x.size(2)) {
    // torchvision resizes uint8 tensors in float and rounds back to uint8.
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{size, size})
                              .mode(torch::kBilinear)
                              .align_corners(false))
            .round_();
  }
  return x;
}

torch::Tensor ImageStore::normalise(torch::Tensor x, const Preprocessing& p) const {
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device_);
  auto mean = torch::tensor({p.mean[0], p.mean[1], p.mean[2]}, torch::kDouble).to(opts).view({1, 3, 1, 1});
  auto std = torch::tensor({p.std[0], p.std[1], p.std[2]}, torch::kDouble).to(opts).view({1, 3, 1, 1});
  return x.div_(255.0).sub_(mean).div_(std);
}

torch::Tensor ImageStore::eval_batch(const torch::Tensor& indices, const Preprocessing& p) const {
  auto x = gather_resized(indices, p.eval_resize);
  // torchvision's CenterCrop: offsets round((size - crop) / 2), Python rounding (half to even).
  const auto offset = static_cast<int64_t>(std::nearbyint((p.eval_resize - p.crop) / 2.0));
  x = x.index({Slice(), Slice(), Slice(offset, offset + p.crop), Slice(offset, offset + p.crop)});
  return normalise(x.contiguous(), p);
}

torch::Tensor ImageStore::train_batch(const torch::Tensor& indices, const Preprocessing& p, const Augmentation& a) const {
  const int64_t batch = indices.size(0);
  if (a.offsets.sizes() != torch::IntArrayRef({batch, 2}) || a.flips.sizes() != torch::IntArrayRef({batch})) {
    throw std::invalid_argument("augmentation needs offsets [B, 2] and flips [B]");
  }
  const int64_t limit = p.train_resize - p.crop;
  if (batch > 0 && (a.offsets.min().item<int64_t>() < 0 || a.offsets.max().item<int64_t>() > limit)) {
    throw std::invalid_argument("crop offsets must lie in [0, " + std::to_string(limit) + "]");
  }
  auto x = gather_resized(indices, p.train_resize);
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
  auto offsets = a.offsets.to(long_opts);
  auto flips = a.flips.to(device_, torch::kBool);
  auto steps = torch::arange(p.crop, long_opts);
  auto rows = offsets.index({Slice(), Slice(0, 1)}) + steps;                              // [B, crop]
  auto cols = offsets.index({Slice(), Slice(1, 2)}) + torch::where(flips.view({-1, 1}), steps.flip(0), steps);
  auto b = torch::arange(batch, long_opts).view({-1, 1, 1});
  // Advanced indexing puts the broadcast [B, crop, crop] first and the channel slice last.
  x = x.index({b, Slice(), rows.view({batch, p.crop, 1}), cols.view({batch, 1, p.crop})});
  return normalise(x.permute({0, 3, 1, 2}).contiguous(), p);
}

Augmentation ImageStore::sample_augmentation(int64_t batch, const Preprocessing& p, at::Generator& generator) const {
  Augmentation a;
  a.offsets = torch::randint(0, p.train_resize - p.crop + 1, {batch, 2}, generator, torch::kLong);
  a.flips = p.flip ? torch::rand({batch}, generator) < 0.5 : torch::zeros({batch}, torch::kBool);
  return a;
}

}  // namespace xt
