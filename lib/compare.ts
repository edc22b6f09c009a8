// Comparison of models side by side: what each costs (parameters, multiply-accumulates, images/s,
// peak memory) and what it achieves (test accuracy, training time). `xception-torch compare` fills
// these rows; lib/report/ turns them into tables and charts.
import { benchmarkSteps } from './benchmark';
import { createModel, Device, ModelName, ModelOptionsByName } from './models';
import { native } from './native';
import { PeakMemory, startPeakMemory } from './peak-memory';
import { REFERENCE_RESULTS, ReferenceResult } from './reference-results';

/** 'models': Xception against Inception V3; 'activations': Xception with each intermediate activation. */
export type ComparisonKind = 'models' | 'activations';

/** 'train': train and test each; 'throughput': timed steps on a random batch; 'params-only': counts only. */
export type ComparisonMode = 'train' | 'throughput' | 'params-only';

export interface ComparisonRow {
  /** The run's folder name inside the comparison folder ('xception', 'inception_v3', 'xception-elu'). */
  name: string;
  /** How tables and charts show it. */
  label: string;
  model: ModelName;
  modelOptions: ModelOptionsByName[ModelName];
  imageSize: number;
  parameters: number;
  /** Multiply-accumulates of one eval-mode forward pass of one image at imageSize. */
  macsPerImage: number;
  /** train: the run's test accuracy (0..1) and loss, training time and training images/s. */
  testAccuracy?: number;
  testLoss?: number;
  trainingSeconds?: number;
  trainImagesPerSecond?: number;
  epochs?: number;
  bestEpoch?: number;
  bestValAccuracy?: number;
  /** throughput: eval-mode forward images/s. */
  inferImagesPerSecond?: number;
  /** Peak memory while it trained (train, throughput); null where the device gives no figure. */
  peakMemory?: PeakMemory | null;
  /** throughput: peak memory of the inference passes. */
  inferPeakMemory?: PeakMemory | null;
  /** Test accuracy in percent per million parameters. */
  accuracyPerMillionParameters?: number;
}

export interface Comparison {
  kind: ComparisonKind;
  mode: ComparisonMode;
  /** False while runs are still to come (the file is rewritten after each run). */
  complete: boolean;
  createdAt: string;
  /** 'Xception vs Inception V3', ... */
  title: string;
  /** What every run shared, in words. */
  setup: string;
  /** The settings of each run, by row name. */
  settings: Record<string, unknown>;
  runtime: { libtorch: string; device: string; threads: number };
  rows: ComparisonRow[];
  /** The reference notebook's published figures, for context (not measured here). */
  reference: ReferenceResult[];
  /** Chart files, relative to the comparison folder. */
  figures: string[];
}

/**
 * Parameters and multiply-accumulates per image of a model built with `options`. A RangeError when
 * the model cannot train on `imageSize` crops (model.checkTrainingCrop).
 */
export async function modelCost<N extends ModelName>(model: N, options: ModelOptionsByName[N], imageSize: number): Promise<{ parameters: number; macsPerImage: number }> {
  // The counts do not depend on the weights: skip Inception V3's (slow) truncated-normal initialisation.
  const net = createModel(model, model === 'inception_v3' ? { ...options, initWeights: false } : options);
  try {
    net.checkTrainingCrop(imageSize);
    const summary = await net.summary(imageSize);
    return { parameters: summary.parameters, macsPerImage: summary.macs };
  } finally {
    net.dispose();
  }
}

/** Accuracy (0..1) as percent per million parameters: how much each parameter buys. */
export function accuracyPerMillionParameters(accuracy: number, parameters: number): number {
  return (accuracy * 100) / (parameters / 1e6);
}

export interface ThroughputOptions {
  device: Device;
  /** Mixed precision of the steps, as in training. */
  amp: 'off' | 'fp16' | 'bf16';
  channelsLast: boolean;
  batch: number;
  imageSize: number;
  warmup: number;
  steps: number;
  seed: number;
  /** Called before each measurement, for progress output. */
  onStart?: (mode: 'train' | 'infer') => void;
}

export interface Throughput {
  trainImagesPerSecond: number;
  inferImagesPerSecond: number;
  trainPeakMemory: PeakMemory | null;
  inferPeakMemory: PeakMemory | null;
}

/** Training-step and inference images/s of one model, each with its peak memory. */
export async function measureThroughput<N extends ModelName>(model: N, options: ModelOptionsByName[N], o: ThroughputOptions): Promise<Throughput> {
  native().manualSeed(o.seed);
  const net = createModel(model, options).to(o.device);
  try {
    const measure = async (mode: 'train' | 'infer') => {
      o.onStart?.(mode);
      const probe = startPeakMemory(net.device);
      const r = await benchmarkSteps(net, {
        mode, batch: o.batch, size: o.imageSize, warmup: o.warmup, steps: o.steps, amp: o.amp, channelsLast: o.channelsLast,
      });
      return { imagesPerSecond: r.imagesPerSecond, peak: probe.read() };
    };
    const train = await measure('train');
    const infer = await measure('infer');
    return {
      trainImagesPerSecond: train.imagesPerSecond,
      inferImagesPerSecond: infer.imagesPerSecond,
      trainPeakMemory: train.peak,
      inferPeakMemory: infer.peak,
    };
  } finally {
    net.dispose();
  }
}

/** The reference figures that match a comparison: both models, or Xception with the activations compared. */
export function referenceResultsFor(kind: ComparisonKind, activations: readonly string[] = []): ReferenceResult[] {
  return REFERENCE_RESULTS.filter((r) => (kind === 'models'
    ? r.model === 'inception_v3' || r.activation === 'relu'
    : r.model === 'xception' && activations.includes(r.activation ?? '')));
}
