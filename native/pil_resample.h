// PIL's resampling (libImaging/Resample.c, 8 bits per channel) in C++, byte for byte: a separable
// convolution whose kernel widens with the reduction (antialiasing), coefficients in 22-bit fixed
// point, the horizontal pass first, each pass rounded and clipped to 8 bits. torchvision's PIL
// transforms are crops and resizes of this kind, so the image-folder data path reproduces them:
//   RandomResizedCrop: crop the box, resize it to size x size   (then a flip)
//   Resize + CenterCrop: resize the whole image, keep the centre window
// Both are "resize a source box to (width, height), keep an output window" below. The same
// arithmetic in TypeScript is lib/images/resample.ts (predict's evaluation transform).
#pragma once

#include <cstdint>

namespace xt {

enum class ResampleFilter { Bilinear, Bicubic };

struct PixelBox {
  int64_t left = 0, top = 0, width = 0, height = 0;
};

// `src`: RGB bytes (HWC) of an image `src_width` pixels wide. The `from` box of it is resized to
// `resized_width` x `resized_height`, of which the `window` is written to `dst` (window.width *
// window.height * 3 bytes, HWC), mirrored left-right when `flip`. Throws std::invalid_argument
// when a box does not fit.
void resample_rgb(const uint8_t* src, int64_t src_width, int64_t src_height, PixelBox from, int64_t resized_width,
                  int64_t resized_height, PixelBox window, ResampleFilter filter, bool flip, uint8_t* dst);

}  // namespace xt
