// The N-API surface of image work done on libuv's workers, off the event loop: decodeJpeg and
// decodeJpegFile (the system's libjpeg, native/jpeg_decode.h) and resampleRgb (PIL's crop and resize,
// native/pil_resample.h), for lib/images/decode.ts and lib/images/folder-transform.ts.
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>

#include "jpeg_decode.h"
#include "napi_support.h"
#include "pil_resample.h"

namespace xt::napi {
namespace {

PixelBox box_of(const Napi::Value& value, const char* name) {
  if (!value.IsObject()) throw std::invalid_argument(std::string(name) + " must be { left, top, width, height }");
  auto o = value.As<Napi::Object>();
  PixelBox b;
  b.left = int_option(o, "left", -1);
  b.top = int_option(o, "top", -1);
  b.width = int_option(o, "width", 0);
  b.height = int_option(o, "height", 0);
  return b;
}

// resampleRgb(src: Uint8Array, width, height, from: Box, resizedWidth, resizedHeight, window: Box,
//             filter: 'bilinear' | 'bicubic', flip: boolean, out: Uint8Array, offset) -> Promise<void>
// PIL's resize of the `from` box of an RGB image to resizedWidth x resizedHeight, of which `window`
// (mirrored when `flip`) is written into `out` at byte `offset`, on a libuv worker.
Napi::Value ResampleRgb(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 11) {
      throw std::invalid_argument(
          "resampleRgb(src, width, height, from, resizedWidth, resizedHeight, window, filter, flip, out, offset)");
    }
    auto src = typed_array_arg<Napi::Uint8Array>(info[0], napi_uint8_array, "src must be a Uint8Array");
    auto out = typed_array_arg<Napi::Uint8Array>(info[9], napi_uint8_array, "out must be a Uint8Array");
    auto number = [&](int i) {
      if (!info[i].IsNumber()) throw std::invalid_argument("resampleRgb: sizes and offsets must be numbers");
      return info[i].As<Napi::Number>().Int64Value();
    };
    const int64_t width = number(1), height = number(2), resized_width = number(4), resized_height = number(5);
    const int64_t offset = number(10);
    const PixelBox from = box_of(info[3], "from"), window = box_of(info[6], "window");
    const std::string name = info[7].IsString() ? info[7].As<Napi::String>().Utf8Value() : "";
    if (name != "bilinear" && name != "bicubic") throw std::invalid_argument("filter must be 'bilinear' or 'bicubic'");
    const auto filter = name == "bilinear" ? ResampleFilter::Bilinear : ResampleFilter::Bicubic;
    const bool flip = info[8].ToBoolean().Value();
    if (width < 1 || height < 1 || static_cast<int64_t>(src.ElementLength()) != width * height * 3)
      throw std::invalid_argument("src must hold width * height * 3 bytes");
    if (resized_width < 1 || resized_height < 1) throw std::invalid_argument("the resized size must be positive");
    if (window.width < 1 || window.height < 1 || offset < 0 ||
        offset + window.width * window.height * 3 > static_cast<int64_t>(out.ElementLength())) {
      throw std::invalid_argument("out has no room for the window at that offset");
    }
    const uint8_t* src_data = src.Data();
    uint8_t* dst = out.Data() + offset;
    // The worker reads src and writes out: both stay referenced until it is done.
    auto owner = Napi::Object::New(info.Env());
    owner.Set("src", info[0]);
    owner.Set("out", info[9]);
    return AsyncTask::StartOnPool(
        info.Env(),
        [=]() -> AsyncTask::Finish {
          resample_rgb(src_data, width, height, from, resized_width, resized_height, window, filter, flip, dst);
          return [](Napi::Env env) -> Napi::Value { return env.Undefined(); };
        },
        {}, owner);
  });
}

// The decoded image as { width, height, data: Uint8Array } (owning its pixels), or null.
AsyncTask::Finish pixels_result(std::optional<RgbPixels> decoded) {
  if (!decoded) return [](Napi::Env env) -> Napi::Value { return env.Null(); };
  auto pixels = std::make_shared<RgbPixels>(std::move(*decoded));
  return [pixels](Napi::Env env) -> Napi::Value {
    auto* owned = new RgbPixels(std::move(*pixels));
    const size_t length = owned->data.size();
    auto buffer = Napi::ArrayBuffer::New(
        env, owned->data.data(), length, [](Napi::Env, void*, RgbPixels* p) { delete p; }, owned);
    auto o = Napi::Object::New(env);
    o.Set("width", static_cast<double>(owned->width));
    o.Set("height", static_cast<double>(owned->height));
    o.Set("data", Napi::Uint8Array::New(env, length, buffer, 0));
    return o;
  };
}

int64_t max_pixels_arg(const Napi::CallbackInfo& info) {
  const int64_t max_pixels = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  if (max_pixels < 1) throw std::invalid_argument("maxPixels must be positive");
  return max_pixels;
}

// decodeJpeg(bytes: Uint8Array, maxPixels) -> Promise<{ width, height, data: Uint8Array } | null>:
// RGB bytes as PIL's loader gets them, or null for a CMYK/YCCK file. Rejects with libjpeg's reason
// for data that is not a whole JPEG.
Napi::Value DecodeJpeg(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!jpeg_decoder_available()) throw std::runtime_error("this addon was built without libjpeg");
    auto bytes =
        typed_array_arg<Napi::Uint8Array>(info[0], napi_uint8_array, "decodeJpeg(bytes: Uint8Array, maxPixels)");
    const int64_t max_pixels = max_pixels_arg(info);
    const uint8_t* data = bytes.Data();
    const size_t size = bytes.ByteLength();
    return AsyncTask::StartOnPool(
        info.Env(), [=]() -> AsyncTask::Finish { return pixels_result(decode_jpeg_rgb(data, size, max_pixels)); }, {},
        info[0].As<Napi::Object>());
  });
}

// decodeJpegFile(path, maxPixels) -> Promise<{ width, height, data } | null>: the file read and
// decoded on the worker (one trip through the pool instead of fs's several); null when it cannot be
// read, is not a JPEG or is a CMYK/YCCK one. Rejects with the reason a JPEG cannot be decoded.
Napi::Value DecodeJpegFile(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!jpeg_decoder_available()) throw std::runtime_error("this addon was built without libjpeg");
    if (info.Length() < 1 || !info[0].IsString())
      throw std::invalid_argument("decodeJpegFile(path: string, maxPixels)");
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const int64_t max_pixels = max_pixels_arg(info);
    return AsyncTask::StartOnPool(info.Env(), [=]() -> AsyncTask::Finish {
      // A file that cannot be read comes back as null too: the caller's own read then says why, in
      // Node's words (ENOENT, EACCES, ...).
      // Anything but a JPEG is told by its first bytes, before the rest is read (the caller reads it).
      std::ifstream file(path, std::ios::binary);
      if (!file) return pixels_result(std::nullopt);
      std::vector<uint8_t> bytes(4);
      if (!file.read(reinterpret_cast<char*>(bytes.data()), 4) || bytes[0] != 0xff || bytes[1] != 0xd8 ||
          bytes[2] != 0xff) {
        return pixels_result(std::nullopt);
      }
      bytes.insert(bytes.end(), std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
      if (file.bad()) return pixels_result(std::nullopt);
      return pixels_result(decode_jpeg_rgb(bytes.data(), bytes.size(), max_pixels));
    });
  });
}

}  // namespace

void define_images(Napi::Env env, Napi::Object exports) {
  exports.Set("resampleRgb", Napi::Function::New(env, ResampleRgb));
  exports.Set("decodeJpeg", Napi::Function::New(env, DecodeJpeg));
  exports.Set("decodeJpegFile", Napi::Function::New(env, DecodeJpegFile));
  exports.Set("jpegDecoder", Napi::Boolean::New(env, jpeg_decoder_available()));
}

}  // namespace xt::napi
