// JPEG files to RGB bytes with the system's libjpeg(-turbo), as PIL's loader gets them from the same
// library (default settings: the accurate integer IDCT, fancy upsampling, libjpeg's own YCbCr and
// greyscale conversions; EXIF orientation and ICC profiles ignored). Decoding here instead of in
// sharp takes a third of the time, which the image-folder data path needs to keep a GPU fed.
// CMYK and YCCK files, which PIL converts with its own formula, are left to lib/images/decode.ts.
// Built only where CMake finds libjpeg (XT_WITH_LIBJPEG); elsewhere sharp decodes everything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace xt {

struct RgbPixels {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> data;  // width * height * 3, rows top to bottom (HWC)
};

// The reason a file is not a whole JPEG (libjpeg's message; a truncated file is an error, as in PIL).
class JpegError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool jpeg_decoder_available();

// The image, or nothing for a CMYK/YCCK JPEG (decode those the way PIL converts them). Throws
// JpegError for data that is not a whole JPEG, std::invalid_argument above `max_pixels`.
std::optional<RgbPixels> decode_jpeg_rgb(const uint8_t* bytes, size_t size, int64_t max_pixels);

}  // namespace xt
