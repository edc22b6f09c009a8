#include "data.h"

#include "device_copy.h"

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
    throw std::invalid_argument("the crop (" + std::to_string(crop) +
                                ") cannot be larger than the evaluation resize (" + std::to_string(eval_resize) + ")");
  }
  for (double s : std) {
    if (!(s > 0)) throw std::invalid_argument("std must hold three positive numbers");
  }
  if (image_size < 1) throw std::invalid_argument("the dataset has no pixels");
}

ImageStore::ImageStore(torch::Tensor images, torch::Tensor labels, torch::Device device) : device_(device) {
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
  return labels_.index_select(0, to_device(indices, device_, torch::kLong));
}

namespace {

// torchvision resizes uint8 tensors in float (bilinear, align_corners=False); the rounding back to
// integers happens after the crop, which commutes with it.
torch::Tensor resize_float(torch::Tensor x, int64_t size) {
  if (size == x.size(-1)) return x;
  return F::interpolate(
      x,
      F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kBilinear).align_corners(false));
}

// Round half to even (torch.round) for 0 <= v < 2^23: adding and subtracting 2^23 leaves the
// float rounded in the default rounding mode (IEEE arithmetic: the compiler may not fold the
// pair without -ffast-math). Unlike nearbyintf it needs no libm call, so the loop vectorises.
inline float round_half_even(float v) {
  constexpr float kMagic = 8388608.0f;  // 2^23
  return (v + kMagic) - kMagic;
}

inline float normalise_pixel(float v, float mean, float std) { return (round_half_even(v) / 255.0f - mean) / std; }

// ToTensor's scaling and Normalize, in torchvision's order of operations. x: [..., 3, H, W].
torch::Tensor normalise_(torch::Tensor x, const torch::Tensor& mean, const torch::Tensor& std) {
  return x.round_().div_(255.0).sub_(mean).div_(std);
}

}  // namespace

torch::Tensor ImageStore::assemble(const torch::Tensor& indices, int64_t resize, const torch::Tensor& offsets,
                                   const torch::Tensor& flips, const Preprocessing& p) const {
  if (p.strategy == Preprocessing::Strategy::PerImage && !device_.is_cpu()) {
    throw std::invalid_argument("the 'per-image' strategy runs on the CPU only; use 'batched' or 'auto' on " +
                                device_.str());
  }
  const bool per_image = p.strategy == Preprocessing::Strategy::PerImage ||
                         (p.strategy == Preprocessing::Strategy::Auto && device_.is_cpu());
  return per_image ? assemble_per_image(indices, resize, offsets, flips, p)
                   : assemble_batched(indices, resize, offsets, flips, p);
}

torch::Tensor ImageStore::assemble_per_image(const torch::Tensor& indices, int64_t resize, const torch::Tensor& offsets,
                                             const torch::Tensor& flips, const Preprocessing& p) const {
  const int64_t batch = indices.size(0);
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device_);
  auto out = torch::empty({batch, images_.size(1), p.crop, p.crop}, opts);
  auto source = images_.index_select(0, indices.to(device_, torch::kLong));
  auto offsets_cpu = offsets.to(torch::kCPU, torch::kLong).contiguous();
  auto flips_cpu = flips.to(torch::kCPU, torch::kBool).contiguous();
  const auto* off = offsets_cpu.data_ptr<int64_t>();
  const auto* flip = flips_cpu.data_ptr<bool>();
  const int64_t channels = images_.size(1);
  const int64_t crop = p.crop;
  // One image at a time keeps the resized image in cache; images run in parallel across threads
  // (ops inside a parallel region are single-threaded).
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      auto x = resize_float(source[b].unsqueeze(0).to(torch::kFloat), resize)[0].contiguous();
      const float* src = x.data_ptr<float>();
      float* dst = out[b].data_ptr<float>();
      const int64_t side = x.size(2);
      // Crop, flip, round and normalise in one pass, with torchvision's float32 arithmetic:
      // round (half to even) -> / 255 -> - mean -> / std.
      const bool flipped = flip[b];
      for (int64_t ch = 0; ch < channels; ++ch) {
        const float mean = static_cast<float>(p.mean[ch]);
        const float std = static_cast<float>(p.std[ch]);
        for (int64_t r = 0; r < crop; ++r) {
          const float* row = src + (ch * side + off[2 * b] + r) * side + off[2 * b + 1];
          float* o = dst + (ch * crop + r) * crop;
          if (flipped) {
            for (int64_t c = 0; c < crop; ++c) o[c] = normalise_pixel(row[crop - 1 - c], mean, std);
          } else {
            for (int64_t c = 0; c < crop; ++c) o[c] = normalise_pixel(row[c], mean, std);
          }
        }
      }
    }
  });
  return out;
}

torch::Tensor ImageStore::assemble_batched(const torch::Tensor& indices, int64_t resize, const torch::Tensor& offsets,
                                           const torch::Tensor& flips, const Preprocessing& p) const {
  const int64_t batch = indices.size(0);
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device_);
  auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
  auto mean = to_device(torch::tensor({p.mean[0], p.mean[1], p.mean[2]}, torch::kDouble), device_, torch::kFloat)
                  .view({1, 3, 1, 1});
  auto std = to_device(torch::tensor({p.std[0], p.std[1], p.std[2]}, torch::kDouble), device_, torch::kFloat)
                 .view({1, 3, 1, 1});
  auto x = resize_float(images_.index_select(0, to_device(indices, device_, torch::kLong)).to(torch::kFloat), resize);
  auto off = to_device(offsets, device_, torch::kLong);
  auto steps = torch::arange(p.crop, long_opts);
  auto rows = off.index({Slice(), Slice(0, 1)}) + steps;  // [B, crop]
  auto cols = off.index({Slice(), Slice(1, 2)}) +
              torch::where(to_device(flips, device_, torch::kBool).view({-1, 1}), steps.flip(0), steps);
  auto b = torch::arange(batch, long_opts).view({-1, 1, 1});
  // Advanced indexing puts the broadcast [B, crop, crop] first and the channel slice last.
  x = x.index({b, Slice(), rows.view({batch, p.crop, 1}), cols.view({batch, 1, p.crop})});
  return normalise_(x.permute({0, 3, 1, 2}).contiguous(), mean, std);
}

torch::Tensor ImageStore::eval_batch(const torch::Tensor& indices, const Preprocessing& p) const {
  // torchvision's CenterCrop: offsets round((size - crop) / 2), Python rounding (half to even).
  const auto offset = static_cast<int64_t>(std::nearbyint((p.eval_resize - p.crop) / 2.0));
  const int64_t batch = indices.size(0);
  return assemble(indices, p.eval_resize, torch::full({batch, 2}, offset, torch::kLong),
                  torch::zeros({batch}, torch::kBool), p);
}

torch::Tensor ImageStore::train_batch(const torch::Tensor& indices, const Preprocessing& p,
                                      const Augmentation& a) const {
  const int64_t batch = indices.size(0);
  if (a.offsets.sizes() != torch::IntArrayRef({batch, 2}) || a.flips.sizes() != torch::IntArrayRef({batch})) {
    throw std::invalid_argument("augmentation needs offsets [B, 2] and flips [B]");
  }
  const int64_t limit = p.train_resize - p.crop;
  if (batch > 0 && (a.offsets.min().item<int64_t>() < 0 || a.offsets.max().item<int64_t>() > limit)) {
    throw std::invalid_argument("crop offsets must lie in [0, " + std::to_string(limit) + "]");
  }
  return assemble(indices, p.train_resize, a.offsets, a.flips, p);
}

Augmentation ImageStore::sample_augmentation(int64_t batch, const Preprocessing& p, at::Generator& generator) const {
  Augmentation a;
  a.offsets = torch::randint(0, p.train_resize - p.crop + 1, {batch, 2}, generator, torch::kLong);
  a.flips = p.flip ? torch::rand({batch}, generator) < 0.5 : torch::zeros({batch}, torch::kBool);
  return a;
}

}  // namespace xt
