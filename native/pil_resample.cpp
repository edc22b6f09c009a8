#include "pil_resample.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace xt {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

double bicubic(double x) {
  // PIL's a = -0.5 (Catmull-Rom).
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// precompute_coeffs + normalize_coeffs_8bpc, for output samples [first, first + count) only.
struct Coefficients {
  int64_t ksize = 0;
  std::vector<int64_t> start, taps;  // per output sample: first input sample, number of taps
  std::vector<int32_t> weights;      // ksize per output sample
};

Coefficients coefficients(int64_t in_size, int64_t out_size, int64_t first, int64_t count, ResampleFilter f) {
  const double support_1 = f == ResampleFilter::Bilinear ? 1.0 : 2.0;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = support_1 * filter_scale;
  Coefficients c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.start.resize(count);
  c.taps.resize(count);
  c.weights.assign(count * c.ksize, 0);
  std::vector<double> k(c.ksize);
  const double ss = 1.0 / filter_scale;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t xx = first + i;
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      const double arg = (static_cast<double>(x + xmin) - center + 0.5) * ss;
      k[x] = f == ResampleFilter::Bilinear ? bilinear(arg) : bicubic(arg);
      ww += k[x];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = ww != 0.0 ? k[x] / ww : k[x];
      // (int)(±0.5 + w * 2^22): C truncates toward zero.
      c.weights[i * c.ksize + x] =
          static_cast<int32_t>(w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.start[i] = xmin;
    c.taps[i] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t v) {
  if (v >= (1 << (kPrecisionBits + 8))) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

bool fits(const PixelBox& b, int64_t width, int64_t height) {
  return b.width >= 1 && b.height >= 1 && b.left >= 0 && b.top >= 0 && b.left + b.width <= width &&
         b.top + b.height <= height;
}

}  // namespace

void resample_rgb(const uint8_t* src, int64_t src_width, int64_t src_height, PixelBox from, int64_t resized_width,
                  int64_t resized_height, PixelBox window, ResampleFilter filter, bool flip, uint8_t* dst) {
  if (!fits(from, src_width, src_height)) throw std::invalid_argument("the source box does not fit in the image");
  if (!fits(window, resized_width, resized_height))
    throw std::invalid_argument("the output window does not fit in the resized image");
  const int32_t half = 1 << (kPrecisionBits - 1);
  const int64_t out_w = window.width, out_h = window.height;
  const bool horizontal = resized_width != from.width;
  const bool vertical = resized_height != from.height;

  // The source rows the vertical pass reads for the window's rows (all of them without one).
  Coefficients cv;
  int64_t row_first = window.top, row_count = out_h;
  if (vertical) {
    cv = coefficients(from.height, resized_height, window.top, out_h, filter);
    row_first = cv.start.front();
    int64_t row_end = 0;
    for (int64_t i = 0; i < out_h; ++i) row_end = std::max(row_end, cv.start[i] + cv.taps[i]);
    row_count = row_end - row_first;
  }

  // Horizontal pass over those rows, for the window's columns only: [row_count, out_w, 3].
  std::vector<uint8_t> mid(static_cast<size_t>(row_count * out_w * 3));
  if (horizontal) {
    const auto ch = coefficients(from.width, resized_width, window.left, out_w, filter);
    for (int64_t y = 0; y < row_count; ++y) {
      const uint8_t* row = src + ((from.top + row_first + y) * src_width + from.left) * 3;
      uint8_t* out = mid.data() + y * out_w * 3;
      for (int64_t i = 0; i < out_w; ++i) {
        int32_t s0 = half, s1 = half, s2 = half;
        const int32_t* w = ch.weights.data() + i * ch.ksize;
        const uint8_t* p = row + ch.start[i] * 3;
        for (int64_t x = 0; x < ch.taps[i]; ++x, p += 3) {
          s0 += p[0] * w[x];
          s1 += p[1] * w[x];
          s2 += p[2] * w[x];
        }
        out[i * 3] = clip8(s0);
        out[i * 3 + 1] = clip8(s1);
        out[i * 3 + 2] = clip8(s2);
      }
    }
  } else {
    for (int64_t y = 0; y < row_count; ++y) {
      const uint8_t* row = src + ((from.top + row_first + y) * src_width + from.left + window.left) * 3;
      std::copy(row, row + out_w * 3, mid.data() + y * out_w * 3);
    }
  }

  // Vertical pass (or the rows as they are), then the flip. The sums of a row are kept side by
  // side and each tap added across the whole row, which the compiler vectorises; the sums are
  // PIL's, term by term (integer additions in any order give the same total).
  const int64_t stride = out_w * 3;
  std::vector<int32_t> sums(static_cast<size_t>(stride));
  for (int64_t yy = 0; yy < out_h; ++yy) {
    uint8_t* out = dst + yy * stride;
    if (vertical) {
      const int32_t* w = cv.weights.data() + yy * cv.ksize;
      const uint8_t* base = mid.data() + (cv.start[yy] - row_first) * stride;
      std::fill(sums.begin(), sums.end(), half);
      int32_t* acc = sums.data();
      for (int64_t y = 0; y < cv.taps[yy]; ++y) {
        const uint8_t* row = base + y * stride;
        const int32_t weight = w[y];
        for (int64_t i = 0; i < stride; ++i) acc[i] += row[i] * weight;
      }
      for (int64_t i = 0; i < stride; ++i) out[i] = clip8(acc[i]);
    } else {
      std::copy(mid.data() + yy * stride, mid.data() + (yy + 1) * stride, out);
    }
    if (flip) {
      for (int64_t a = 0, b = out_w - 1; a < b; ++a, --b) {
        for (int c = 0; c < 3; ++c) std::swap(out[a * 3 + c], out[b * 3 + c]);
      }
    }
  }
}

}  // namespace xt
