// The image-folder data path's work on one decoded image, as torchvision's PIL transforms do it:
//   training:   RandomResizedCrop(size) + RandomHorizontalFlip   (torchvision's and timm's defaults)
//   evaluation: Resize(floor(size / crop_pct)) + CenterCrop(size)
// giving size x size RGB bytes (HWC) in a batch buffer; scaling and normalising happen on the
// device (native/fed_batches.cpp). Decoding is lib/images/decode.ts (PIL's convert('RGB') pixels,
// in sharp); the crop and resize are PIL's own arithmetic, byte for byte, in the addon
// (native/pil_resample.cpp), on libuv's pool like the decoding, off the event loop.
import { native } from '../native';
import type { RgbImage } from './decode';
import { resizeSize, roundHalfEven, shorterSideSize } from './eval-transform';
import type { Interpolation } from './resample';
import { CropBox, randomResizedCropBox, RandomResizedCropOptions } from './random-resized-crop';

export interface FolderTransform extends RandomResizedCropOptions {
  /** The model's input: height and width of every crop. */
  size: number;
  /** Evaluation: size / the shorter side before the centre crop (timm's crop_pct). */
  cropPct: number;
  /** Evaluation: the shorter side before the centre crop, when given; else floor(size / cropPct). */
  resize?: number;
  interpolation: Interpolation;
  /** Training: flip horizontally with p = 0.5. */
  flip: boolean;
}

/** F.resized_crop(image, box, [size, size]) then an optional flip, written at `offset` of `out`. */
export function resizedCrop(image: RgbImage, box: CropBox, size: number, interpolation: Interpolation, flip: boolean, out: Uint8Array, offset: number): Promise<void> {
  const from = { left: box.left, top: box.top, width: box.width, height: box.height };
  const window = { left: 0, top: 0, width: size, height: size };
  return native().resampleRgb(image.data, image.width, image.height, from, size, size, window, interpolation, flip, out, offset);
}

/** One image as a training crop: `random` draws the box, then the flip (torchvision's order). */
export function trainCrop(image: RgbImage, t: FolderTransform, random: () => number, out: Uint8Array, offset: number): Promise<void> {
  const box = randomResizedCropBox(image.width, image.height, random, t);
  const flip = t.flip && random() < 0.5;
  return resizedCrop(image, box, t.size, t.interpolation, flip, out, offset);
}

/**
 * The copy --cache-images keeps: the image resized (PIL's filter) so that its shorter side is the
 * evaluation resize, as Resize(floor(size / crop_pct)) leaves it. Evaluation crops from it are the
 * same bytes as from the file; training crops come from it instead of the full-size image.
 */
export async function cachedCopy(image: RgbImage, t: FolderTransform): Promise<RgbImage> {
  const target = shorterSideSize(image.width, image.height, resizeSize(t));
  if (target.width >= image.width) return image;  // no smaller than the file: kept as decoded
  const data = new Uint8Array(target.width * target.height * 3);
  const whole = { left: 0, top: 0, width: image.width, height: image.height };
  const window = { left: 0, top: 0, width: target.width, height: target.height };
  await native().resampleRgb(image.data, image.width, image.height, whole, target.width, target.height, window, t.interpolation, false, data, 0);
  return { width: target.width, height: target.height, data };
}

/** One image as an evaluation crop: the shorter side resized, the centre size x size kept. */
export function evalCrop(image: RgbImage, t: FolderTransform, out: Uint8Array, offset: number): Promise<void> {
  const target = shorterSideSize(image.width, image.height, resizeSize(t));
  const window = {
    left: roundHalfEven((target.width - t.size) / 2), top: roundHalfEven((target.height - t.size) / 2), width: t.size, height: t.size,
  };
  const whole = { left: 0, top: 0, width: image.width, height: image.height };
  return native().resampleRgb(image.data, image.width, image.height, whole, target.width, target.height, window, t.interpolation, false, out, offset);
}
