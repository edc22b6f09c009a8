// Dataset images on the training device and the reference preprocessing, done on whole batches
// by libtorch: gather -> resize (bilinear) -> crop (+ flip when training) -> scale -> normalise.
// Equivalent, image for image, to torchvision's tensor transforms
//   train: Resize(train_resize) -> RandomCrop(crop) -> RandomHorizontalFlip -> ToTensor -> Normalize
//   eval:  Resize(eval_resize)  -> CenterCrop(crop)                          -> ToTensor -> Normalize
#pragma once

#include "live_objects.h"
#include "torch_includes.h"

#include <array>

namespace xt {

struct Preprocessing {
  int64_t train_resize = 320;
  int64_t eval_resize = 299;
  int64_t crop = 299;
  bool flip = true;
  std::array<double, 3> mean{0.485, 0.456, 0.406};
  std::array<double, 3> std{0.229, 0.224, 0.225};
  // How a batch is assembled: image by image in parallel with one fused pass per image (CPU
  // only, cache-friendly), or with whole-batch ops (fewest kernel launches, best on GPU). Auto
  // picks by device; both give the same values.
  enum class Strategy { Auto, PerImage, Batched } strategy = Strategy::Auto;

  // Throws std::invalid_argument when the sizes cannot work together for `image_size` inputs.
  void validate(int64_t image_size) const;
};

// Per-image augmentation of a training batch: crop offsets (top, left) as int64 [B, 2] and
// horizontal flips as bool [B], both on the CPU.
struct Augmentation {
  torch::Tensor offsets;
  torch::Tensor flips;
};

// The images of one split, held once as uint8 [N, C, H, W] on the device, with int64 labels [N].
class ImageStore : public LiveCount<ImageStore> {
 public:
  ImageStore(torch::Tensor images, torch::Tensor labels, torch::Device device);

  int64_t size() const { return images_.size(0); }
  int64_t image_size() const { return images_.size(2); }
  const torch::Device& device() const { return device_; }

  // int64 indices [B] (any device) -> labels [B] on the device.
  torch::Tensor labels(const torch::Tensor& indices) const;
  // Normalised float batch [B, C, crop, crop] on the device.
  torch::Tensor eval_batch(const torch::Tensor& indices, const Preprocessing& p) const;
  torch::Tensor train_batch(const torch::Tensor& indices, const Preprocessing& p, const Augmentation& a) const;
  // RandomCrop offsets uniform in [0, train_resize - crop], flips with probability 0.5 (if enabled).
  Augmentation sample_augmentation(int64_t batch, const Preprocessing& p, at::Generator& generator) const;

 private:
  // Resize to `resize`, crop at per-image offsets [B, 2] with flips [B], round, scale, normalise.
  torch::Tensor assemble(const torch::Tensor& indices, int64_t resize, const torch::Tensor& offsets,
                         const torch::Tensor& flips, const Preprocessing& p) const;
  torch::Tensor assemble_per_image(const torch::Tensor& indices, int64_t resize, const torch::Tensor& offsets,
                                   const torch::Tensor& flips, const Preprocessing& p) const;
  torch::Tensor assemble_batched(const torch::Tensor& indices, int64_t resize, const torch::Tensor& offsets,
                                 const torch::Tensor& flips, const Preprocessing& p) const;

  torch::Tensor images_;
  torch::Tensor labels_;
  torch::Device device_;
};

}  // namespace xt
