#include "jpeg_decode.h"

#ifdef XT_WITH_LIBJPEG
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h, which it needs

#include <memory>
#endif

namespace xt {

#ifndef XT_WITH_LIBJPEG

bool jpeg_decoder_available() { return false; }

std::optional<RgbPixels> decode_jpeg_rgb(const uint8_t*, size_t, int64_t) {
  throw std::logic_error("this addon was built without libjpeg");
}

#else

namespace {

// libjpeg reports a fatal error by calling error_exit, which must not return: jump back out.
struct ErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf escape;
  char message[JMSG_LENGTH_MAX] = {0};
};

void on_error(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->escape, 1);
}

// Warnings are ignored as PIL ignores them, except the end of data before the end of the image:
// PIL refuses a truncated file ("image file is truncated"), so it is an error here too.
void on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) on_error(cinfo);
}

}  // namespace

bool jpeg_decoder_available() { return true; }

std::optional<RgbPixels> decode_jpeg_rgb(const uint8_t* bytes, size_t size, int64_t max_pixels) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = jpeg_std_error(&err.base);
  err.base.error_exit = on_error;
  err.base.emit_message = on_message;
  // What this frame uses after a longjmp back into it is declared before setjmp and not itself
  // assigned afterwards (only what it points to), so its value is defined there.
  std::unique_ptr<RgbPixels> out(new RgbPixels);
  if (setjmp(err.escape)) {
    jpeg_destroy_decompress(&cinfo);
    throw JpegError(err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK || cinfo.num_components == 4) {
    jpeg_destroy_decompress(&cinfo);
    return std::nullopt;
  }
  if (static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) {
    jpeg_destroy_decompress(&cinfo);
    throw std::invalid_argument("the image has more pixels than the limit");
  }
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out->width = cinfo.output_width;
  out->height = cinfo.output_height;
  out->data.resize(static_cast<size_t>(out->width * out->height * 3));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->data.data() + static_cast<size_t>(cinfo.output_scanline) * out->width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return std::move(*out);
}

#endif

}  // namespace xt
