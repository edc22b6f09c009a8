// Image files to 8-bit RGB pixels, as torchvision's loader sees them: PIL's
// `Image.open(f).convert('RGB')`. Decoding runs on libuv's thread pool, off the event loop: JPEGs in
// the addon with the system's libjpeg, the library PIL decodes them with (native/jpeg_decode.h;
// three times faster than sharp), where the addon was built with it; everything else, and every
// image in an addon without it, in sharp (libvips, prebuilt binaries from npm). sharp's own
// conversions to sRGB match PIL's for every kind but two, which are done here from the raw samples:
//   CMYK (JPEG)      PIL's naive formula, no colour management: R = 255 - K - C(255 - K)/255
//   16-bit grey PNG  PIL opens it as mode I and clips each value to 0..255 (no scaling: 300 is 255)
// Everything else (greyscale, 1-bit, palette with or without transparency, alpha, 16-bit RGB(A):
// the high byte) comes out of sharp bit for bit as PIL gives it (test/images.test.ts). Like PIL's
// loader, embedded ICC profiles and EXIF orientation are ignored, and alpha is dropped without
// compositing onto a background.
import * as fs from 'fs';
import sharp, { type Sharp } from 'sharp';
import { ImageDecodeError } from '../errors';
import { native } from '../native';

/** An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC). */
export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes. */
  data: Uint8Array;
}

/** The file extensions the decoder is meant for (torchvision's IMG_EXTENSIONS that it reads). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png'];

// Decompression bombs: sharp's default limit, 0x3FFF * 0x3FFF pixels (PIL refuses above 2 * 89.5 M).
const MAX_PIXELS = 0x3fff * 0x3fff;

/** A decoder's message on one line, each distinct part once (libvips repeats its warnings). */
export const decodeFailureReason = (error: unknown): string => {
  const parts = String((error as Error)?.message ?? error).split(/\s*\n\s*|;\s*/).filter((part) => part !== '');
  return [...new Set(parts)].join('; ');
};
const reason = decodeFailureReason;

/**
 * Decodes a JPEG or PNG file (greyscale, palette, CMYK, 16-bit, with or without alpha) to RGB as
 * PIL's `Image.open(file).convert('RGB')` does. Throws an ImageDecodeError naming the file when it
 * cannot be read or is not a whole image of a known format.
 */
export async function decodeImage(file: string): Promise<RgbImage> {
  if (native().jpegDecoder) {
    // A JPEG is read and decoded in one trip through the pool; anything else (and a file that
    // cannot be read, which the read below reports) comes back as null.
    const decoded = await viaLibjpeg(file, () => native().decodeJpegFile(file, MAX_PIXELS));
    if (decoded) return decoded;
  }
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (error) {
    throw new ImageDecodeError(file, reason(error));
  }
  return decodeImageBytes(bytes, file);
}

/** decodeImage() for a file already in memory; `file` names it in errors. */
export async function decodeImageBytes(bytes: Uint8Array, file = '<buffer>'): Promise<RgbImage> {
  if (isJpeg(bytes) && native().jpegDecoder) {
    const decoded = await viaLibjpeg(file, () => native().decodeJpeg(bytes, MAX_PIXELS));
    if (decoded) return decoded;  // else CMYK: PIL's own conversion below
  }
  const input = () => sharp(bytes, { ignoreIcc: true, limitInputPixels: MAX_PIXELS, failOn: 'warning' });
  try {
    const meta = await input().metadata();
    if (meta.format !== 'jpeg' && meta.format !== 'png') {
      throw new Error(`it is ${meta.format ?? 'of an unknown format'}; JPEG and PNG are supported`);
    }
    if (meta.space === 'cmyk') return fromCmyk(await raw(input().pipelineColourspace('cmyk').toColourspace('cmyk')));
    if (meta.space === 'grey16' && !meta.hasAlpha) return fromGrey16(await raw(input().toColourspace('grey16'), 'ushort'));
    return toRgb(await raw(input().removeAlpha()));
  } catch (error) {
    if (error instanceof ImageDecodeError) throw error;
    throw new ImageDecodeError(file, reason(error));
  }
}

/** The addon's libjpeg decode, a failure as an ImageDecodeError naming `file`; null: not one it decodes. */
async function viaLibjpeg(file: string, decode: () => Promise<RgbImage | null>): Promise<RgbImage | null> {
  try {
    return await decode();
  } catch (error) {
    throw new ImageDecodeError(file, reason(error));
  }
}

/** JPEG's start-of-image marker and the first marker after it. */
const isJpeg = (b: Uint8Array): boolean => b.length > 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

interface RawPixels {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array | Uint16Array;
}

async function raw(pipeline: Sharp, depth?: 'ushort'): Promise<RawPixels> {
  const { data, info } = await pipeline.raw(depth ? { depth } : {}).toBuffer({ resolveWithObject: true });
  const samples = depth === 'ushort'
    ? new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return { width: info.width, height: info.height, channels: info.channels, data: samples };
}

/** sRGB output of sharp: 3 channels, or 1 (grey) to repeat. */
function toRgb(p: RawPixels): RgbImage {
  const pixels = p.width * p.height;
  if (p.channels === 3) return { width: p.width, height: p.height, data: p.data as Uint8Array };
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const v = p.data[i * p.channels];
    out[i * 3] = v;
    out[i * 3 + 1] = v;
    out[i * 3 + 2] = v;
  }
  return { width: p.width, height: p.height, data: out };
}

/** PIL's cmyk2rgb (libImaging/Convert.c): nk = 255 - K; R = nk - C * nk / 255, rounded as MULDIV255. */
function fromCmyk(p: RawPixels): RgbImage {
  const pixels = p.width * p.height;
  const out = new Uint8Array(pixels * 3);
  const muldiv255 = (a: number, b: number) => {
    const t = a * b + 128;
    return ((t >> 8) + t) >> 8;
  };
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - p.data[i * 4 + 3];
    for (let c = 0; c < 3; c++) out[i * 3 + c] = nk - muldiv255(p.data[i * 4 + c], nk);
  }
  return { width: p.width, height: p.height, data: out };
}

/** PIL's mode I to RGB: each value clipped to 0..255. */
function fromGrey16(p: RawPixels): RgbImage {
  const pixels = p.width * p.height;
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const v = Math.min(p.data[i * p.channels], 255);
    out[i * 3] = v;
    out[i * 3 + 1] = v;
    out[i * 3 + 2] = v;
  }
  return { width: p.width, height: p.height, data: out };
}
