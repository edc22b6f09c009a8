// The settings of `train` (and of each `compare` run): what the command-line options resolve to,
// layered strongest first: the command line, the config file (-c), --quick's presets, the run being
// resumed, the defaults; checked, described, and turned into TrainerOptions.
import type { SyntheticDatasetOptions } from '../datasets';
import { defaultResize } from '../datasets/device-dataset';
import { Device, ModelName } from '../models';
import { AmpOption, ResolvedTrainerOptions, TrainerOptions } from '../trainer';
import { UsageError } from './options';
import { SavedRun } from './run-folder';
import { LIMITS } from '../limits';
import { PresetName, PRESETS } from '../images/presets';

export interface TrainSettings {
  model: ModelName;
  dataset: 'cifar10' | 'synthetic' | 'folder';
  dataDir?: string;
  /** Image folders: evaluation crop_pct, resize filter, whether undecodable files are left out. */
  cropPct?: number;
  interpolation?: 'bilinear' | 'bicubic';
  skipBadImages?: boolean;
  cacheImages?: boolean;
  /** A published weight set's preprocessing (lib/images/presets.ts): mean/std, filter, crop_pct, transform_input. */
  preset?: PresetName;
  synthetic?: SyntheticDatasetOptions;
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer: 'adam' | 'adamw';
  weightDecay: number;
  schedule: 'constant' | 'cosine';
  labelSmoothing: number;
  amp: AmpOption;
  device: Device;
  imageSize: number;
  resize: number;
  activation: 'none' | 'relu' | 'elu';
  variant: 'paper' | 'notebook';
  /** Undefined: an image folder's class count. */
  numClasses?: number;
  auxLogits: boolean;
  auxWeight: number;
  /** Undefined: a tenth of an image folder. */
  valSize?: number;
  trainLimit?: number;
  evalLimit?: number;
  seed: number;
  threads?: number;
  fusedAdam: boolean;
  initWeights?: string;
  freezeBackbone?: boolean;
  out?: string;
}

/** --quick: a small synthetic job that learns in about a minute on a laptop CPU. */
export const QUICK: Readonly<Partial<TrainSettings>> = Object.freeze<Partial<TrainSettings>>({
  dataset: 'synthetic',
  synthetic: { trainSize: 512, valSize: 128, testSize: 128, difficulty: 'easy' },
  imageSize: 32,
  resize: 36,
  batchSize: 16,
  epochs: 3,
  device: 'cpu',
  amp: 'off',
});

/** Classes in the built-in datasets (CIFAR-10 and the synthetic one). */
const DATASET_CLASSES = 10;

/** The settings that the command-line options map onto one to one (same camelCase names). */
const OPTION_KEYS = [
  'model', 'dataset', 'dataDir', 'epochs', 'batchSize', 'lr', 'optimizer', 'weightDecay', 'schedule', 'labelSmoothing',
  'amp', 'device', 'imageSize', 'resize', 'activation', 'variant', 'numClasses', 'auxLogits', 'auxWeight', 'valSize', 'trainLimit',
  'evalLimit', 'seed', 'threads', 'fusedAdam', 'initWeights', 'freezeBackbone', 'out', 'cropPct', 'interpolation', 'skipBadImages', 'cacheImages', 'preset',
] as const satisfies ReadonlyArray<keyof TrainSettings>;

/** --quick's help: what the preset sets. */
export function describeQuick(q: Readonly<Partial<TrainSettings>>): string {
  const sizes = q.synthetic ? ` (${q.synthetic.difficulty ?? 'default'}) ${q.synthetic.trainSize}/${q.synthetic.valSize}/${q.synthetic.testSize} images` : '';
  const parts = [
    `${q.dataset}${sizes}`, `${q.imageSize}x${q.imageSize} (resize ${q.resize})`, `batch ${q.batchSize}`, `${q.epochs} epochs`,
    String(q.device), `amp ${q.amp}`, ...(q.auxLogits === false ? ['no aux logits'] : []),
  ];
  return `a small CPU job: ${parts.join(', ')}; options given too override these`;
}

/** The settings of a saved run, as the options that would recreate it. */
export function savedSettings(run: SavedRun): Partial<TrainSettings> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON written by the Trainer
  const [o, mo] = [run.meta.options, run.meta.modelOptions] as Array<Record<string, any>>;
  if (o.dataset !== 'cifar10' && o.dataset !== 'synthetic' && o.dataset !== 'folder') {
    throw new Error(`the run in ${run.runDir} used the dataset '${String(o.dataset)}', which the CLI cannot load; resume it from code`);
  }
  const s: Partial<TrainSettings> = {
    model: run.meta.model,
    dataset: o.dataset,
    dataDir: run.command?.dataDir,
    synthetic: o.synthetic ?? run.command?.synthetic,
    epochs: o.epochs,
    batchSize: o.batchSize,
    lr: o.optimizer?.lr,
    optimizer: o.optimizer?.type,
    weightDecay: o.optimizer?.weightDecay,
    schedule: o.schedule,
    labelSmoothing: o.labelSmoothing,
    amp: o.amp,
    device: o.device,
    imageSize: o.preprocessing?.crop,
    resize: o.preprocessing?.resize,
    activation: mo.intermediateActivation,
    variant: mo.variant,
    numClasses: mo.numClasses,
    auxLogits: mo.auxLogits,
    auxWeight: o.auxLossWeight,
    valSize: o.valSize,
    trainLimit: o.trainLimit ?? undefined,
    evalLimit: o.evalLimit ?? undefined,
    seed: o.seed,
    fusedAdam: o.fusedAdam,
    freezeBackbone: o.freezeBackbone,
    cropPct: o.imageFolder?.cropPct,
    interpolation: o.imageFolder?.interpolation,
    skipBadImages: o.imageFolder?.skipBadImages,
    cacheImages: o.imageFolder?.cacheImages,
    preset: run.command?.preset,
  };
  return Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined && v !== null));
}

/**
 * Settings from the parsed options. `source(key)` is commander's value source ('cli' when given,
 * 'config' from the -c file, which counts as given: it yielded to the command line when merged);
 * `saved` is the run being resumed; `quickPreset` what --quick sets.
 */
export function resolveTrainSettings(
  opts: Record<string, unknown>, source: (key: string) => string | undefined, saved?: Partial<TrainSettings>,
  quickPreset: Readonly<Partial<TrainSettings>> = QUICK,
): TrainSettings {
  const quick = opts.quick ? quickPreset : {};
  const rank = new Map<string, number>();
  const s: Record<string, unknown> = {};
  for (const key of OPTION_KEYS) {
    const given = ['cli', 'env', 'config'].includes(source(key) ?? '');
    const [value, r] = given ? [opts[key], 3]
      : key in quick ? [quick[key as keyof TrainSettings], 2]
        : saved && key in saved ? [saved[key], 1]
          : [opts[key], 0];
    s[key] = value;
    rank.set(key, r);
  }
  // A resize from a weaker source than the crop size follows the crop at the reference ratio.
  if (rank.get('resize')! < rank.get('imageSize')!) s.resize = defaultResize(s.imageSize as number);
  let synthetic = quick.synthetic ?? saved?.synthetic;
  if (rank.get('valSize') === 3 && s.dataset === 'synthetic') synthetic = { ...synthetic, valSize: s.valSize as number };
  // A preset sets the filter and crop_pct that --interpolation and --crop-pct do not.
  if (s.preset) {
    const t = PRESETS[s.preset as PresetName].transform;
    if (rank.get('interpolation')! < 3) s.interpolation = t.interpolation;
    if (rank.get('cropPct')! < 3) s.cropPct = t.cropPct;
  }
  // An image folder's classifier has one output per class unless --num-classes says otherwise.
  if (s.dataset === 'folder' && rank.get('numClasses') === 0) s.numClasses = undefined;
  // ... and holds out a tenth of its images for validation unless --val-size says otherwise.
  if (s.dataset === 'folder' && rank.get('valSize') === 0) s.valSize = undefined;
  const settings = { ...s, synthetic } as TrainSettings;
  validateSettings(settings);
  return settings;
}

/** What the options alone can tell; what the model accepts (smallest crop, aux head) the Trainer asks it. */
function validateSettings(s: TrainSettings): void {
  if (s.resize < s.imageSize) throw new UsageError(`--resize (${s.resize}) must be at least --image-size (${s.imageSize})`);
  if (s.preset && PRESETS[s.preset].model !== s.model) throw new UsageError(`--preset ${s.preset} is for ${PRESETS[s.preset].model}, not ${s.model}`);
  if (s.dataset === 'folder' && !s.dataDir) throw new UsageError('--dataset folder needs --data-dir DIR: a folder with one sub-folder of images per class');
  if (s.dataset !== 'folder' && s.numClasses !== undefined && s.numClasses < DATASET_CLASSES) {
    throw new UsageError(`--num-classes must be at least ${DATASET_CLASSES}: ${s.dataset} has ${DATASET_CLASSES} classes`);
  }
  if (s.dataset === 'cifar10' && s.valSize !== undefined && s.valSize > LIMITS.cifar10TrainImages - LIMITS.minTrainBatch) {
    throw new UsageError(`--val-size must leave training images: CIFAR-10 has ${LIMITS.cifar10TrainImages}, so at most ${LIMITS.cifar10TrainImages - LIMITS.minTrainBatch}; got ${s.valSize}`);
  }
}

export function toTrainerOptions(s: TrainSettings): TrainerOptions {
  const preset = s.preset ? PRESETS[s.preset] : undefined;
  // The preset's exact resize (torchvision's Inception V3: 342) when its crop size is the one trained.
  const presetResize = preset && preset.transform.size === s.imageSize && s.cropPct === preset.transform.cropPct ? preset.transform.resize : undefined;
  return {
    model: s.model,
    modelOptions: s.model === 'xception'
      ? { numClasses: s.numClasses, intermediateActivation: s.activation, variant: s.variant }
      : { numClasses: s.numClasses, auxLogits: s.auxLogits, ...preset?.modelOptions },
    dataset: s.dataset,
    dataDir: s.dataDir,
    synthetic: s.dataset === 'synthetic' ? s.synthetic : undefined,
    imageFolder: s.dataset === 'folder' ? { cropPct: s.cropPct, resize: presetResize, interpolation: s.interpolation, skipBadImages: s.skipBadImages, cacheImages: s.cacheImages } : undefined,
    valSize: s.valSize,
    trainLimit: s.trainLimit,
    evalLimit: s.evalLimit,
    epochs: s.epochs,
    batchSize: s.batchSize,
    optimizer: { type: s.optimizer, lr: s.lr, weightDecay: s.weightDecay },
    schedule: s.schedule,
    labelSmoothing: s.labelSmoothing,
    amp: s.amp,
    device: s.device,
    preprocessing: { crop: s.imageSize, resize: s.resize, evalResize: s.imageSize, ...(preset && { mean: preset.transform.mean, std: preset.transform.std }) },
    outDir: s.out,
    seed: s.seed,
    auxLossWeight: s.auxWeight,
    threads: s.threads,
    fusedAdam: s.fusedAdam,
    initWeights: s.initWeights,
    freezeBackbone: s.freezeBackbone,
  };
}

/** `xception (paper, activation none)` or `inception_v3`. */
export function describeModel(s: TrainSettings): string {
  return s.model === 'xception' ? `xception (${s.variant}, activation ${s.activation})` : `inception_v3${s.auxLogits ? '' : ' (no aux logits)'}`;
}

/** The data and training setup: dataset, crops, batch, epochs, optimizer, device, precision, seed. */
export function describeSetup(s: TrainSettings, resolved: ResolvedTrainerOptions): string {
  const limits = [s.trainLimit && `train limit ${s.trainLimit}`, s.evalLimit && `eval limit ${s.evalLimit}`].filter(Boolean);
  const crops = s.dataset === 'folder'
    ? `RandomResizedCrop ${s.imageSize} (evaluation: crop_pct ${s.cropPct}, ${s.interpolation})`
    : `${s.imageSize}x${s.imageSize} crops (resize ${s.resize})`;
  return `${s.dataset === 'folder' ? `folder ${s.dataDir}` : s.dataset}${limits.length ? ` (${limits.join(', ')})` : ''}: ${crops}, ` +
    `batch ${s.batchSize}, ${s.epochs} epoch${s.epochs === 1 ? '' : 's'}, ${s.optimizer} lr ${s.lr}${s.schedule === 'cosine' ? ' cosine' : ''}, ` +
    `${String(resolved.device)}, amp ${String(resolved.amp)}, seed ${s.seed}${s.preset ? `, preset ${s.preset}` : ''}${s.freezeBackbone ? ', frozen backbone (the classifier trains)' : ''}`;
}
