// A split's images held once on the training device (uint8), and the reference preprocessing run
// natively on whole batches (native/data.cpp). No per-image JavaScript runs for a batch.
import { native, NativeBatch, NativeDatasetHandle } from '../native';
import type { Device, TensorData } from '../models';
import type { ImageSet } from './types';
import { resolveDevice } from '../runtime';

export interface Preprocessing {
  /** Training: resize the images to this size first (torchvision Resize, bilinear). Default 320. */
  resize?: number;
  /** Evaluation: resize to this size before the center crop. Default: the crop size. */
  evalResize?: number;
  /** Training: random crop of this size; evaluation: center crop. Default 299. */
  crop?: number;
  /** Training: random horizontal flip with p = 0.5. Default true. */
  flip?: boolean;
  /** Per-channel normalisation after scaling to [0, 1]. Default ImageNet's. */
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
  /** How batches are assembled: 'per-image' (parallel over images; the CPU default) or 'batched'
   * (whole-batch ops; the GPU default). Both give the same values. Default 'auto'. */
  strategy?: 'auto' | 'per-image' | 'batched';
}

/** The reference setup: train 32 -> 320, random crop 299, flip; evaluation 32 -> 299, center crop 299. */
export const REFERENCE_PREPROCESSING: Readonly<Required<Preprocessing>> = Object.freeze({
  resize: 320,
  evalResize: 299,
  crop: 299,
  flip: true,
  mean: [0.485, 0.456, 0.406] as const,
  std: [0.229, 0.224, 0.225] as const,
  strategy: 'auto',
});

/** The training resize for a crop size when none is given: the reference ratio 320 : 299. */
export function defaultResize(crop: number): number {
  return Math.floor((REFERENCE_PREPROCESSING.resize * crop) / REFERENCE_PREPROCESSING.crop);
}

export function resolvePreprocessing(p: Preprocessing = {}): Required<Preprocessing> {
  const crop = p.crop ?? REFERENCE_PREPROCESSING.crop;
  return {
    resize: p.resize ?? defaultResize(crop),
    evalResize: p.evalResize ?? crop,
    crop,
    flip: p.flip ?? REFERENCE_PREPROCESSING.flip,
    mean: p.mean ?? REFERENCE_PREPROCESSING.mean,
    std: p.std ?? REFERENCE_PREPROCESSING.std,
    strategy: p.strategy ?? 'auto',
  };
}

/** A preprocessed batch: images [B, 3, crop, crop] and their labels; for training batches, the
 * crop offsets (top, left per image) and flips that were applied. */
export interface Batch extends TensorData {
  labels: Int32Array;
  offsets?: Int32Array;
  flips?: Uint8Array;
}

/** Explicit augmentation (for reproducing a batch) or a seed to draw it from. */
export type Augmentation = { seed: number } | { offsets: Int32Array; flips: Uint8Array };

export class DeviceDataset {
  private constructor(private readonly handle: NativeDatasetHandle) {}

  /** Copies the images to `device` once, as uint8. */
  static fromImageSet(set: ImageSet, device: Device = 'cpu'): DeviceDataset {
    const resolved = resolveDevice(device);
    const shape = [set.count, set.channels, set.height, set.width];
    return new DeviceDataset(new (native().NativeDataset)(set.images, set.labels, shape, resolved));
  }

  /** @internal The addon's handle, for the Trainer. */
  get nativeHandle(): NativeDatasetHandle {
    return this.handle;
  }

  get size(): number {
    return this.handle.size();
  }

  /** Frees the images now (on the GPU, their device memory) rather than at garbage collection. */
  dispose(): void {
    this.handle.dispose();
  }

  get device(): string {
    return this.handle.device();
  }

  /** Evaluation batch: resize to evalResize, center crop, scale, normalise. Never augmented. */
  evalBatch(indices: ArrayLike<number>, preprocessing?: Preprocessing): Promise<Batch> {
    return this.run(indices, { ...resolvePreprocessing(preprocessing), train: false });
  }

  /** Training batch: resize, random crop, random flip, scale, normalise. */
  trainBatch(indices: ArrayLike<number>, preprocessing?: Preprocessing, augmentation: Augmentation = { seed: 0 }): Promise<Batch> {
    return this.run(indices, { ...resolvePreprocessing(preprocessing), train: true }, augmentation);
  }

  // async: argument errors thrown by the addon become rejections, like compute errors.
  private async run(indices: ArrayLike<number>, options: Required<Preprocessing> & { train: boolean }, augment?: Augmentation): Promise<NativeBatch> {
    return this.handle.batch(Int32Array.from(indices), options, augment);
  }
}
