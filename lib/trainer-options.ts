// The Trainer's options, in one place: what a caller may give (TrainerOptions), each default stated
// once (TRAINER_DEFAULTS), and resolveTrainerOptions(), which turns the first into the complete,
// checked settings a run uses and records in history.json and its checkpoints. The Trainer, `train`,
// `evaluate` and `compare` all resolve through it; constraints that depend on the model (the
// smallest input, Inception's aux head) are asked of the model once it is built.
import * as path from 'path';
import type { DatasetSplits, SyntheticDatasetOptions } from './datasets';
import { Preprocessing, resolvePreprocessing } from './datasets/device-dataset';
import { ImageFolderOptions, resolveImageFolderOptions } from './datasets/image-folder';
import type { GradScaler } from './grad-scaler';
import { LIMITS, maxThreads } from './limits';
import { resolveDevice, runtimeInfo } from './runtime';
import { DistributedOptions, DistributedSettings, perRankBatchSize, resolveDistributed } from './distributed/settings';
import { Device, InceptionV3, InceptionV3Options, MODEL_NAMES, ModelName, Xception, XceptionOptions } from './models';

export type AmpOption = 'auto' | 'fp16' | 'bf16' | 'off';

export interface OptimizerOptions {
  /** 'adam' (L2 weight decay, as torch.optim.Adam) or 'adamw' (decoupled). Default 'adam'. */
  type?: 'adam' | 'adamw';
  /** Learning rate. Default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Default 0. */
  weightDecay?: number;
}

export interface TrainerOptions {
  /** A model name (built with `modelOptions`) or a model you made. */
  model: ModelName | Xception | InceptionV3;
  modelOptions?: XceptionOptions | InceptionV3Options;
  /**
   * 'cifar10' (downloaded and cached on first use), 'synthetic', 'folder' (your images in dataDir,
   * ImageFolder's layout, streamed from disk), or your own splits in memory. Default 'cifar10'.
   */
  dataset?: 'cifar10' | 'synthetic' | 'folder' | DatasetSplits;
  /** CIFAR-10: the folder holding cifar-10-batches-bin/ or that folder itself; 'folder': the image folder. */
  dataDir?: string;
  /** dataset 'folder': crops (RandomResizedCrop, crop_pct, filter), prefetch depth, bad files. */
  imageFolder?: ImageFolderOptions;
  /** Synthetic dataset sizes and seed. */
  synthetic?: SyntheticDatasetOptions;
  /** Images held out of the training set for validation: CIFAR-10's default 5000; an image folder
   * without val/ holds out a tenth by default. */
  valSize?: number;
  /** Use only the first N training images. */
  trainLimit?: number;
  /** Use only the first N validation and test images. */
  evalLimit?: number;
  epochs?: number;
  batchSize?: number;
  /** Evaluation batch size. Default: batchSize. */
  evalBatchSize?: number;
  optimizer?: OptimizerOptions;
  /** Learning-rate schedule over all steps. Default 'constant' (the reference). */
  schedule?: 'constant' | 'cosine';
  labelSmoothing?: number;
  /** Mixed precision: 'auto' is fp16 on CUDA and off on the CPU. */
  amp?: AmpOption;
  /** Loss scaling for fp16; default: a GradScaler with torch.amp's defaults when amp is fp16. */
  gradScaler?: GradScaler | false;
  device?: Device;
  /**
   * Data-parallel training over c10d: 'env' joins the group torchrun (or `train --nproc-per-node`)
   * describes in the environment (one process alone when WORLD_SIZE is unset or 1), or the group
   * given here. batchSize stays the global batch. See docs/distributed.md.
   */
  distributed?: 'env' | DistributedOptions;
  preprocessing?: Preprocessing;
  /** Where history, metrics and checkpoints go. Default runs/<model>-<timestamp>. */
  outDir?: string;
  /** Seeds the weights, the split, and every shuffle, crop, flip and dropout mask. Default 0. */
  seed?: number;
  /** Weight of Inception V3's auxiliary loss (the notebook used 0). Default 0.4. */
  auxLossWeight?: number;
  /** CPU threads. Default: every core. */
  threads?: number;
  /** channels_last memory format. Default: true (faster on GPUs, and on the CPU: an Xception training step
   * 14-37% and Inception V3's 7% at 96x96 on 2 cores, where NCHW makes oneDNN reorder every activation),
   * data-parallel training included. */
  channelsLast?: boolean;
  /** CUDA: let cuDNN time its convolution algorithms on the first batches and keep the fastest
   * (torch.backends.cudnn.benchmark; process-wide). Default true. */
  cudnnBenchmark?: boolean;
  /** CUDA with libtorch >= 2.0: run Adam as torch.optim's fused kernels (one launch for all
   * parameters, overflow skip on the device). false falls back to the per-tensor update without a
   * rebuild. No effect on the CPU. Default true. */
  fusedAdam?: boolean;
  /** Batches between progress reports ('batch' events). Default 1 on the CPU, 10 on CUDA. */
  progressEvery?: number;
  /**
   * Start from these weights (a .safetensors file or a PyTorch torch.save state dict, see
   * loadWeights): every name and shape is checked; a classifier of another shape (1000 ImageNet
   * classes into 10) stays at its fresh initialisation, and the 'initWeights' event says which
   * tensors were reset. When fit() resumes, the checkpoint's weights replace them.
   */
  initWeights?: string;
  /**
   * Linear probing: train only the classifier (`model.classifierModules()`: `fc`, and Inception V3's
   * `AuxLogits.fc`). The backbone's parameters get no gradient and stay as they are, and its BatchNorm
   * layers normalise with their running statistics, which stay too. Usually with initWeights.
   * Default false.
   */
  freezeBackbone?: boolean;
}


/** The defaults, each stated once. */
export const TRAINER_DEFAULTS = Object.freeze({
  dataset: 'cifar10' as const,
  numClasses: 10,
  epochs: 10,
  batchSize: 128,
  optimizer: Object.freeze({ type: 'adam' as const, lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0 }),
  schedule: 'constant' as const,
  labelSmoothing: 0,
  amp: 'auto' as const,
  device: 'auto' as const,
  seed: 0,
  auxLossWeight: 0.4,
  valSize: 5000,
  cudnnBenchmark: true,
  fusedAdam: true,
  freezeBackbone: false,
  /** Batches between progress reads: each costs a device sync, so rarely on a GPU. */
  progressEvery: Object.freeze({ cpu: 1, cuda: 10 }),
});

/** The settings a run uses, every default filled in and checked (recorded as the run's options). */
export interface ResolvedTrainerOptions {
  model: ModelName;
  modelOptions: Record<string, unknown>;
  dataset: string;
  dataDir: string | null;
  synthetic: SyntheticDatasetOptions | null;
  imageFolder: Required<ImageFolderOptions> | null;
  epochs: number;
  batchSize: number;
  evalBatchSize: number;
  optimizer: Required<OptimizerOptions>;
  schedule: 'constant' | 'cosine';
  labelSmoothing: number;
  amp: 'fp16' | 'bf16' | 'off';
  device: string;
  preprocessing: Required<Preprocessing>;
  seed: number;
  auxLossWeight: number;
  /** null: a tenth of an image folder without val/. */
  valSize: number | null;
  trainLimit: number | null;
  evalLimit: number | null;
  threads: number;
  channelsLast: boolean;
  cudnnBenchmark: boolean;
  fusedAdam: boolean;
  progressEvery: number;
  initWeights: string | null;
  freezeBackbone: boolean;
  /** The process group this process trains in; null alone. */
  distributed: DistributedSettings | null;
}

/** What the resolution needs to know of the machine (default: asked of the addon). */
export interface RuntimeFacts {
  cudaAvailable: boolean;
  /** The CPU threads in use. */
  threads: number;
}

const isModelInstance = (m: unknown): m is Xception | InceptionV3 => m instanceof Xception || m instanceof InceptionV3;

/** Throws a RangeError (a mistake in the options) naming the first option that is out of range. */
function checkOptions(o: TrainerOptions): void {
  if (!o || (typeof o.model === 'string' ? !MODEL_NAMES.includes(o.model) : !isModelInstance(o.model))) {
    throw new TypeError(`Trainer needs a model: ${MODEL_NAMES.map((m) => `'${m}'`).join(', ')} or a model object; got ${typeof o?.model === 'string' ? JSON.stringify(o.model) : typeof o?.model}`);
  }
  const integerAtLeast = (name: string, v: number | undefined, min: number, why = '') => {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) {
      throw new RangeError(`${name} must be ${min === 1 ? 'a positive integer' : `an integer of at least ${min}${why}`}; got ${v}`);
    }
  };
  const atMost = (name: string, v: number | undefined, max: number) => {
    if (v !== undefined && v > max) throw new RangeError(`${name} must be at most ${max}; got ${v}`);
  };
  const batchNorm = ' (BatchNorm needs two images per training batch)';
  integerAtLeast('epochs', o.epochs, 1);
  integerAtLeast('batchSize', o.batchSize, LIMITS.minTrainBatch, batchNorm);
  integerAtLeast('evalBatchSize', o.evalBatchSize, 1);
  integerAtLeast('trainLimit', o.trainLimit, LIMITS.minTrainBatch, batchNorm);
  integerAtLeast('evalLimit', o.evalLimit, 1);
  integerAtLeast('threads', o.threads, 1);
  integerAtLeast('progressEvery', o.progressEvery, 1);
  integerAtLeast('valSize', o.valSize, 0);
  integerAtLeast('seed', o.seed, 0);
  atMost('threads', o.threads, maxThreads());
  const lr = o.optimizer?.lr;
  if (lr !== undefined && !(typeof lr === 'number' && lr > 0 && Number.isFinite(lr))) throw new RangeError(`lr must be a positive number; got ${lr}`);
  for (const key of ['crop', 'resize', 'evalResize'] as const) atMost(`preprocessing.${key}`, o.preprocessing?.[key], LIMITS.imageSize);
  for (const key of ['trainSize', 'valSize', 'testSize'] as const) atMost(`synthetic.${key}`, o.synthetic?.[key], LIMITS.syntheticImages);
  if (o.outDir !== undefined && (typeof o.outDir !== 'string' || o.outDir.trim() === '')) {
    throw new RangeError(`outDir must name a folder; got ${JSON.stringify(o.outDir)} (an empty outDir would write the run into the current directory)`);
  }
  for (const flag of ['channelsLast', 'cudnnBenchmark', 'fusedAdam', 'freezeBackbone'] as const) {
    if (o[flag] !== undefined && typeof o[flag] !== 'boolean') {
      throw new RangeError(`${flag} must be true or false; got ${JSON.stringify(o[flag])}`);
    }
  }
  if (o.initWeights !== undefined && (typeof o.initWeights !== 'string' || o.initWeights.trim() === '')) {
    throw new RangeError(`initWeights must name a weights file; got ${JSON.stringify(o.initWeights)}`);
  }
  if (o.dataset === 'folder' && (typeof o.dataDir !== 'string' || o.dataDir.trim() === '')) {
    throw new RangeError("dataset 'folder' needs dataDir: the folder of images (one sub-folder per class)");
  }
  if (o.amp !== undefined && !['auto', 'fp16', 'bf16', 'off'].includes(o.amp)) {
    throw new RangeError(`amp must be 'auto', 'fp16', 'bf16' or 'off'; got ${String(o.amp)}`);
  }
}

/** The machine as the addon sees it. */
function askRuntime(): RuntimeFacts {
  const info = runtimeInfo();
  return { cudaAvailable: info.cudaAvailable, threads: info.threads };
}

/**
 * The complete settings of a run from the options a caller gave: defaults filled in, the 'auto'
 * device and precision resolved, every range checked (RangeError/TypeError for a mistake).
 */
export function resolveTrainerOptions(
  o: TrainerOptions, runtime: RuntimeFacts = askRuntime(), env: NodeJS.ProcessEnv = process.env,
): ResolvedTrainerOptions {
  checkOptions(o);
  const d = TRAINER_DEFAULTS;
  const requestedDevice = resolveDevice(o.device ?? d.device, runtime.cudaAvailable);
  const onCuda = requestedDevice.startsWith('cuda');
  const distributed = resolveDistributed(o.distributed, onCuda ? 'cuda' : 'cpu', env) ?? null;
  // A data-parallel worker on CUDA without a device index takes the GPU of its local rank.
  const device = distributed && requestedDevice === 'cuda' ? `cuda:${distributed.localRank}` : requestedDevice;
  const requestedAmp = o.amp ?? d.amp;
  const batchSize = o.batchSize ?? d.batchSize;
  if (distributed) perRankBatchSize(batchSize, distributed.worldSize);
  return {
    model: typeof o.model === 'string' ? o.model : o.model.name,
    modelOptions: typeof o.model === 'string'
      ? { ...o.modelOptions, numClasses: o.modelOptions?.numClasses ?? (o.dataset === 'folder' ? undefined : d.numClasses) } : { ...o.model.options },
    dataset: typeof o.dataset === 'object' ? o.dataset.name : (o.dataset ?? d.dataset),
    dataDir: o.dataDir ?? null,
    synthetic: o.synthetic ?? null,
    imageFolder: o.dataset === 'folder' ? resolveImageFolderOptions(o.imageFolder) : null,
    epochs: o.epochs ?? d.epochs,
    batchSize,
    evalBatchSize: o.evalBatchSize ?? batchSize,
    optimizer: { ...d.optimizer, ...o.optimizer },
    schedule: o.schedule ?? d.schedule,
    labelSmoothing: o.labelSmoothing ?? d.labelSmoothing,
    amp: requestedAmp === 'auto' ? (onCuda ? 'fp16' : 'off') : requestedAmp,
    device,
    preprocessing: resolvePreprocessing(o.preprocessing),
    seed: o.seed ?? d.seed,
    auxLossWeight: o.auxLossWeight ?? d.auxLossWeight,
    valSize: o.valSize ?? (o.dataset === 'folder' ? null : d.valSize),
    trainLimit: o.trainLimit ?? null,
    evalLimit: o.evalLimit ?? null,
    threads: o.threads ?? runtime.threads,
    channelsLast: o.channelsLast ?? true,
    cudnnBenchmark: o.cudnnBenchmark ?? d.cudnnBenchmark,
    fusedAdam: o.fusedAdam ?? d.fusedAdam,
    progressEvery: o.progressEvery ?? (onCuda ? d.progressEvery.cuda : d.progressEvery.cpu),
    initWeights: o.initWeights === undefined ? null : path.resolve(o.initWeights),
    freezeBackbone: o.freezeBackbone ?? d.freezeBackbone,
    distributed,
  };
}
