// The torchvision/timm evaluation preprocessing of a decoded image:
//   Compose([Resize(resize, interpolation), CenterCrop(size), ToTensor(), Normalize(mean, std)])
// on a PIL image, where resize = floor(size / crop_pct): the shorter side goes to `resize` (the
// longer one to int(resize * long / short)), the centre size x size is cut out, and the bytes
// become (v / 255 - mean) / std in float32, as torch computes them. The result is the image's
// [3, size, size] slice of the NCHW batch model.forward() takes.
import type { TensorData } from '../models';
import type { RgbImage } from './decode';
import { Interpolation, resize } from './resample';

export type { Interpolation } from './resample';

export interface EvalTransform {
  /** Height and width of the centre crop (the model's input). */
  size: number;
  /** The shorter side before cropping: floor(size / cropPct), or given. Default: crop_pct 0.875. */
  resize?: number;
  /** size / resize, timm's crop_pct. Used when `resize` is not given. Default 0.875. */
  cropPct?: number;
  /** The resize filter, PIL's antialiased one. Default 'bilinear' (torchvision's Resize). */
  interpolation?: Interpolation;
  /** Per-channel normalisation after scaling to [0, 1]. */
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

export const DEFAULT_CROP_PCT = 0.875;

/** The shorter side an image is resized to before the centre crop. */
export function resizeSize(t: Pick<EvalTransform, 'size'> & Partial<EvalTransform>): number {
  return t.resize ?? Math.floor(t.size / (t.cropPct ?? DEFAULT_CROP_PCT));
}

/** Checks a transform's numbers; returns a problem, or undefined when it is usable. */
export function transformProblem(t: EvalTransform): string | undefined {
  if (!Number.isSafeInteger(t.size) || t.size < 1) return `the crop size must be a positive integer (got ${t.size})`;
  if (t.cropPct !== undefined && !(t.cropPct > 0 && t.cropPct <= 1)) return `crop_pct must be in (0, 1] (got ${t.cropPct})`;
  const r = resizeSize(t);
  if (!Number.isSafeInteger(r) || r < t.size) return `the resize (${r}) must be an integer >= the crop size ${t.size}`;
  for (const [name, v] of [['mean', t.mean], ['std', t.std]] as const) {
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => Number.isFinite(x))) return `${name} must be 3 finite numbers`;
  }
  if (!t.std.every((s) => s > 0)) return 'std must be positive';
  return undefined;
}

/** torchvision's output size for Resize(int) on a PIL image: the shorter side to `short`. */
export function shorterSideSize(width: number, height: number, short: number): { width: number; height: number } {
  if (width <= height) return { width: short, height: Math.trunc((short * height) / width) };
  return { width: Math.trunc((short * width) / height), height: short };
}

/** Python's round(): halves to even, as torchvision's CenterCrop rounds its offsets. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * One image through the evaluation transform, written as float32 CHW into `out` at `offset`
 * (a new array when not given). Returns the array written to.
 */
export function applyEvalTransform(image: RgbImage, t: EvalTransform, out?: Float32Array, offset = 0): Float32Array {
  const problem = transformProblem(t);
  if (problem) throw new RangeError(problem);
  const size = t.size;
  const target = shorterSideSize(image.width, image.height, resizeSize(t));
  const resized = resize(image, target.width, target.height, t.interpolation ?? 'bilinear');
  const top = roundHalfEven((resized.height - size) / 2);
  const left = roundHalfEven((resized.width - size) / 2);
  const result = out ?? new Float32Array(3 * size * size);
  if (result.length < offset + 3 * size * size) throw new RangeError('the output array is too small for the image');
  for (let c = 0; c < 3; c++) {
    // torch: ToTensor divides in float32, Normalize subtracts and divides in float32.
    const mean = Math.fround(t.mean[c]);
    const std = Math.fround(t.std[c]);
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(Math.fround(v / 255) - mean) / std);
    const plane = offset + c * size * size;
    for (let y = 0; y < size; y++) {
      const row = ((top + y) * resized.width + left) * 3 + c;
      for (let x = 0; x < size; x++) result[plane + y * size + x] = lut[resized.data[row + x * 3]];
    }
  }
  return result;
}

/** A batch [N, 3, size, size] of images through the evaluation transform, for model.forward(). */
export function evalBatch(images: readonly RgbImage[], t: EvalTransform): TensorData {
  const per = 3 * t.size * t.size;
  const data = new Float32Array(images.length * per);
  images.forEach((image, i) => applyEvalTransform(image, t, data, i * per));
  return { shape: [images.length, 3, t.size, t.size], data };
}
