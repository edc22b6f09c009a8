// Timed steps of a model on a fixed random batch (native benchmarkSteps): the training loop's own
// step (forward under autocast, loss, scaled backward, Adam) or an eval-mode forward pass, on the
// model's device. Used by `xception-torch compare --throughput` and the benchmarks in bench/.
import { fromNative } from './errors';
import { InceptionV3, Xception } from './models';
import { native } from './native';

export interface StepBenchmarkOptions {
  /** 'train': a training step; 'infer': eval-mode forward under inference mode. */
  mode: 'train' | 'infer';
  batch: number;
  /** Input height and width. */
  size: number;
  /** Untimed steps first (allocator and cuDNN warm-up). */
  warmup: number;
  /** Timed steps. */
  steps: number;
  /** Mixed precision as in training (fp16 needs CUDA). Default 'off'. */
  amp?: 'off' | 'fp16' | 'bf16';
  /** channels_last weights and input, as training's default. Default true. */
  channelsLast?: boolean;
}

export interface StepBenchmark {
  imagesPerSecond: number;
  seconds: number;
  images: number;
  /** CUDA: the caching allocator's peak over the warm-up and timed steps, in bytes. */
  peakMemory?: number;
}

export async function benchmarkSteps(model: Xception | InceptionV3, o: StepBenchmarkOptions): Promise<StepBenchmark> {
  let r: { seconds: number; images: number; peakMemory?: number };
  try {
    r = await native().benchmarkSteps(model.nativeHandle, {
      batch: o.batch, size: o.size, warmup: o.warmup, steps: o.steps, train: o.mode === 'train', amp: o.amp ?? 'off', channelsLast: o.channelsLast ?? true,
    });
  } catch (error) {
    throw fromNative(error);
  }
  return { imagesPerSecond: r.seconds > 0 ? r.images / r.seconds : 0, seconds: r.seconds, images: r.images, peakMemory: r.peakMemory };
}
