// The Trainer: decides what runs (model, data, options, epochs, files) and hands every batch loop
// to the native training session (native/training.cpp), which runs it on a worker thread.
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { removeStaleTemporaries, writeFileAtomic } from './atomic-write';
import { CheckpointError, findCheckpoint, modelFile, readCheckpointState, STATE_FILE, writeCheckpoint } from './checkpoint';
import { createSyntheticDataset, loadCifar10, selectImages } from './datasets';
import type { DatasetSplits, ImageSet, SyntheticDatasetOptions } from './datasets';
import { DeviceDataset, Preprocessing, resolvePreprocessing } from './datasets/device-dataset';
import { GradScaler } from './grad-scaler';
import { createModel, Device, InceptionV3, InceptionV3Options, ModelName, TrainingJobLease, Xception, XceptionOptions } from './models';
import { native, NativeTrainerHandle, NativeTrainProgress } from './native';
import { TrainingDivergedError } from './errors';
import { LIMITS, maxThreads } from './limits';
import { formatHistoryCsv } from './report/history';
import { withRunLock } from './run-lock';
import { runtimeInfo, setNumThreads } from './runtime';

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
  /** 'cifar10' (downloaded and cached on first use), 'synthetic', or your own splits. Default 'cifar10'. */
  dataset?: 'cifar10' | 'synthetic' | DatasetSplits;
  /** CIFAR-10: the folder holding cifar-10-batches-bin/ or that folder itself. */
  dataDir?: string;
  /** Synthetic dataset sizes and seed. */
  synthetic?: SyntheticDatasetOptions;
  /** CIFAR-10: images held out of the training set for validation. Default 5000. */
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
  preprocessing?: Preprocessing;
  /** Where history, metrics and checkpoints go. Default runs/<model>-<timestamp>. */
  outDir?: string;
  /** Seeds the weights, the split, and every shuffle, crop, flip and dropout mask. Default 0. */
  seed?: number;
  /** Weight of Inception V3's auxiliary loss (the notebook used 0). Default 0.4. */
  auxLossWeight?: number;
  /** CPU threads. Default: every core. */
  threads?: number;
  /** channels_last memory format (helps on GPUs). Default: true on CUDA. */
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
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number;
  valAccuracy: number;
  lr: number;
  lossScale: number;
  seconds: number;
  imagesPerSecond: number;
  skippedSteps: number;
}

export interface History {
  outDir: string;
  epochs: EpochRecord[];
  /** True when fit() was stopped (AbortSignal) before the last epoch ended. */
  interrupted: boolean;
  bestEpoch?: number;
}

export interface EvalResult {
  split: 'val' | 'test';
  loss: number;
  accuracy: number;
  images: number;
  classNames: string[];
  perClassAccuracy: number[];
  /** confusion[true][predicted] */
  confusion: number[][];
}

export interface BatchEvent extends NativeTrainProgress {
  imagesPerSecond: number;
}

interface RunMeta {
  model: ModelName;
  modelOptions: object;
  options: Record<string, unknown>;
  history: EpochRecord[];
  bestValAccuracy: number;
  bestEpoch?: number;
}

/** runs/<prefix>-<timestamp>, e.g. runs/xception-2025-01-01T12-00-00-000Z (the timestamp sorts and is a valid file name). */
export function defaultRunDir(prefix: string, now = new Date()): string {
  return path.resolve('runs', `${prefix}-${now.toISOString().replace(/[:.]/g, '-')}`);
}

const isModelInstance = (m: unknown): m is Xception | InceptionV3 => m instanceof Xception || m instanceof InceptionV3;

export class Trainer extends EventEmitter {
  readonly options: Readonly<TrainerOptions>;
  readonly outDir: string;
  private model?: Xception | InceptionV3;
  private splits?: DatasetSplits;
  private devices = new Map<'train' | 'val' | 'test', DeviceDataset>();
  private session?: NativeTrainerHandle;
  private scaler?: GradScaler;
  /** Set by dispose(): every later call is refused, and a running fit() stops without writing. */
  private disposed = false;
  /** The training job's hold on the model while fit() or evaluate() runs. */
  private lease?: TrainingJobLease;
  /** Whether the last epoch's optimizer ran the fused kernels (recorded in metrics.json). */
  private ranFusedAdam = false;

  constructor(options: TrainerOptions) {
    super();
    if (!options || (typeof options.model !== 'string' && !isModelInstance(options.model))) {
      throw new TypeError("Trainer needs a model: 'xception', 'inception_v3' or a model object");
    }
    const positive = (name: string, v: number | undefined, integer = true) => {
      if (v === undefined) return;
      if (!(typeof v === 'number' && v > 0 && (!integer || Number.isSafeInteger(v)))) {
        throw new RangeError(`${name} must be a positive ${integer ? 'integer' : 'number'}; got ${v}`);
      }
    };
    positive('epochs', options.epochs);
    positive('batchSize', options.batchSize);
    positive('evalBatchSize', options.evalBatchSize);
    positive('trainLimit', options.trainLimit);
    positive('evalLimit', options.evalLimit);
    positive('threads', options.threads);
    positive('progressEvery', options.progressEvery);
    positive('lr', options.optimizer?.lr, false);
    const atMost = (name: string, v: number | undefined, max: number) => {
      if (v !== undefined && v > max) throw new RangeError(`${name} must be at most ${max}; got ${v}`);
    };
    const atLeast = (name: string, v: number | undefined, min: number, why: string) => {
      if (v !== undefined && v < min) throw new RangeError(`${name} must be at least ${min} (${why}); got ${v}`);
    };
    atLeast('batchSize', options.batchSize, LIMITS.minTrainBatch, 'BatchNorm needs two images per training batch');
    atLeast('trainLimit', options.trainLimit, LIMITS.minTrainBatch, 'BatchNorm needs two images per training batch');
    atMost('threads', options.threads, maxThreads());
    for (const key of ['crop', 'resize', 'evalResize'] as const) atMost(`preprocessing.${key}`, options.preprocessing?.[key], LIMITS.imageSize);
    for (const key of ['trainSize', 'valSize', 'testSize'] as const) atMost(`synthetic.${key}`, options.synthetic?.[key], LIMITS.syntheticImages);
    if (options.outDir !== undefined && (typeof options.outDir !== 'string' || options.outDir.trim() === '')) {
      throw new RangeError(`outDir must name a folder; got ${JSON.stringify(options.outDir)} (an empty outDir would write the run into the current directory)`);
    }
    for (const flag of ['channelsLast', 'cudnnBenchmark', 'fusedAdam'] as const) {
      if (options[flag] !== undefined && typeof options[flag] !== 'boolean') {
        throw new RangeError(`${flag} must be true or false; got ${JSON.stringify(options[flag])}`);
      }
    }
    if (options.amp !== undefined && !['auto', 'fp16', 'bf16', 'off'].includes(options.amp)) {
      throw new RangeError(`amp must be 'auto', 'fp16', 'bf16' or 'off'; got ${String(options.amp)}`);
    }
    this.options = options;
    const name = typeof options.model === 'string' ? options.model : options.model.name;
    this.outDir = path.resolve(options.outDir ?? defaultRunDir(name));
  }

  private get modelName(): ModelName {
    const m = this.options.model;
    return typeof m === 'string' ? m : m.name;
  }

  private get device(): string {
    const d = this.options.device ?? 'auto';
    return d === 'auto' ? (native().info().cudaAvailable ? 'cuda' : 'cpu') : d;
  }

  private get amp(): 'fp16' | 'bf16' | 'off' {
    const a = this.options.amp ?? 'auto';
    return a === 'auto' ? (this.device.startsWith('cuda') ? 'fp16' : 'off') : a;
  }

  /** The options as they will run, defaults filled in (written to history.json and metrics.json). */
  resolvedOptions(): Record<string, unknown> {
    const o = this.options;
    return {
      model: this.modelName,
      modelOptions: this.modelOptions(),
      dataset: typeof o.dataset === 'object' ? o.dataset.name : (o.dataset ?? 'cifar10'),
      dataDir: o.dataDir ?? null,
      synthetic: o.synthetic ?? null,
      epochs: o.epochs ?? 10,
      batchSize: o.batchSize ?? 128,
      optimizer: { type: 'adam', lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, ...o.optimizer },
      schedule: o.schedule ?? 'constant',
      labelSmoothing: o.labelSmoothing ?? 0,
      amp: this.amp,
      device: this.device,
      preprocessing: resolvePreprocessing(o.preprocessing),
      seed: o.seed ?? 0,
      auxLossWeight: o.auxLossWeight ?? 0.4,
      valSize: o.valSize ?? 5000,
      trainLimit: o.trainLimit ?? null,
      evalLimit: o.evalLimit ?? null,
      threads: o.threads ?? runtimeInfo().threads,
      fusedAdam: o.fusedAdam ?? true,
    };
  }

  private modelOptions(): object {
    const m = this.options.model;
    if (typeof m !== 'string') return m.options;
    const fallback = { numClasses: 10 };
    return { ...fallback, ...this.options.modelOptions };
  }

  private checkNotDisposed(): void {
    if (this.disposed) throw new Error('this Trainer was disposed; create a new one');
  }

  private async prepare(): Promise<void> {
    this.checkNotDisposed();
    if (this.session) return;
    const o = this.options;
    if (o.threads) setNumThreads(o.threads);
    this.splits = await this.loadSplits();
    // dispose() while the data loaded: build nothing.
    this.checkNotDisposed();
    // The same seed gives the same initial weights.
    if (typeof o.model === 'string') native().manualSeed(o.seed ?? 0);
    const model = typeof o.model === 'string' ? createModel(o.model, this.modelOptions() as never) : o.model;
    const crop = resolvePreprocessing(o.preprocessing).crop;
    if (model instanceof InceptionV3 && model.options.auxLogits && crop < 299) {
      // torchvision's aux head pools Mixed_6e's 17x17 map with a 5x5/3 window and then needs 5x5.
      throw new RangeError(
        `Inception V3's auxiliary classifier needs training crops of at least 299x299 (got ${crop}x${crop}): ` +
        'build the model with auxLogits: false (CLI: --no-aux-logits), or train at 299',
      );
    }
    const classes = (model.options as { numClasses: number }).numClasses;
    if (classes < this.splits.classNames.length) {
      throw new RangeError(`the model has ${classes} outputs but the dataset has ${this.splits.classNames.length} classes`);
    }
    model.to(this.device as Device);
    this.model = model;
    for (const split of ['train', 'val', 'test'] as const) {
      this.devices.set(split, DeviceDataset.fromImageSet(this.splits[split], this.device as Device));
    }
    const amp = this.amp;
    this.scaler = o.gradScaler === false ? undefined : o.gradScaler ?? (amp === 'fp16' ? new GradScaler() : undefined);
    const opt = this.resolvedOptions().optimizer as Required<OptimizerOptions>;
    this.session = new (native().NativeTrainer)(model.nativeHandle, this.devices.get('train')!.nativeHandle, {
      batchSize: o.batchSize ?? 128,
      epochs: o.epochs ?? 10,
      optimizer: opt.type,
      lr: opt.lr,
      beta1: opt.betas[0],
      beta2: opt.betas[1],
      eps: opt.eps,
      weightDecay: opt.weightDecay,
      schedule: o.schedule ?? 'constant',
      labelSmoothing: o.labelSmoothing ?? 0,
      auxLossWeight: o.auxLossWeight ?? 0.4,
      amp,
      scaler: this.scaler?.toNative(),
      seed: o.seed ?? 0,
      preprocessing: resolvePreprocessing(o.preprocessing),
      channelsLast: o.channelsLast ?? this.device.startsWith('cuda'),
      cudnnBenchmark: o.cudnnBenchmark ?? true,
      fusedAdam: o.fusedAdam ?? true,
      // Reading the metrics costs a device sync: rarely on a GPU, every batch on the CPU.
      progressEvery: o.progressEvery ?? (this.device.startsWith('cuda') ? 10 : 1),
    });
  }

  private async loadSplits(): Promise<DatasetSplits> {
    const o = this.options;
    let splits: DatasetSplits;
    if (typeof o.dataset === 'object') splits = o.dataset;
    else if (o.dataset === 'synthetic') splits = createSyntheticDataset({ seed: o.seed ?? 0, ...o.synthetic });
    else splits = await loadCifar10({ dataDir: o.dataDir, valSize: o.valSize ?? 5000, seed: o.seed ?? 0 });
    const limit = (set: ImageSet, n: number | undefined) =>
      n === undefined || n >= set.count ? set : selectImages(set, Array.from({ length: n }, (_, i) => i));
    const limited = {
      ...splits,
      train: limit(splits.train, o.trainLimit),
      val: limit(splits.val, o.evalLimit),
      test: limit(splits.test, o.evalLimit),
    };
    // An empty split would give an accuracy computed from nothing.
    const minimum = { train: LIMITS.minTrainBatch, val: 1, test: 1 };
    for (const split of ['train', 'val', 'test'] as const) {
      const count = limited[split].count;
      if (count < minimum[split]) {
        throw new RangeError(
          `the ${split} split of ${splits.name} has ${count} image${count === 1 ? '' : 's'}; it needs at least ${minimum[split]}` +
            (o.dataset === undefined || o.dataset === 'cifar10' ? ' (is a CIFAR-10 batch file empty or truncated?)' : ''),
        );
      }
    }
    return limited;
  }

  /**
   * Trains for the configured epochs (from the last checkpoint with `resume`), evaluating on the
   * validation split after each epoch and writing history, metrics and checkpoints to outDir.
   * `signal` stops after the current batch, writes a checkpoint, and resolves with
   * `interrupted: true`; `fit({ resume: true })` then continues exactly where it stopped.
   */
  async fit(opts: { signal?: AbortSignal; resume?: boolean } = {}): Promise<History> {
    // One run per folder at a time (lib/run-lock.ts); what killed runs left half written goes first.
    return withRunLock(this.outDir, async () => {
      await removeStaleTemporaries(this.outDir);
      await removeStaleTemporaries(path.join(this.outDir, 'checkpoints'));
      return this.fitLocked(opts);
    });
  }

  private async fitLocked(opts: { signal?: AbortSignal; resume?: boolean }): Promise<History> {
    await this.prepare();
    return this.withModelOwned('Trainer.fit()', () => this.fitOwned(opts));
  }

  /** Runs `job` while this Trainer owns the model (outside calls refused, forwards in flight awaited). */
  private async withModelOwned<T>(what: string, job: () => Promise<T>): Promise<T> {
    if (this.lease) throw new Error('this Trainer is already running fit() or evaluate(): await it first');
    this.lease = await this.model!.claimForTraining(what);
    try {
      return await job();
    } finally {
      this.lease?.release();
      this.lease = undefined;
    }
  }

  private async fitOwned(opts: { signal?: AbortSignal; resume?: boolean }): Promise<History> {
    this.checkNotDisposed();
    const session = this.session!;
    const model = this.model!;
    const epochs = this.options.epochs ?? 10;
    const checkpoints = path.join(this.outDir, 'checkpoints');
    let meta: RunMeta = {
      model: this.modelName, modelOptions: this.modelOptions(), options: this.resolvedOptions(), history: [], bestValAccuracy: -1,
    };
    if (opts.resume) {
      const folder = findCheckpoint(checkpoints, 'last');
      if (!folder) throw new Error(`nothing to resume: no checkpoint in ${checkpoints}`);
      const saved = await readCheckpointState<RunMeta>(folder);
      if (saved.meta.model !== meta.model || JSON.stringify(saved.meta.modelOptions) !== JSON.stringify(meta.modelOptions)) {
        throw new Error(`the checkpoint in ${folder} is of ${saved.meta.model} ${JSON.stringify(saved.meta.modelOptions)}, not of this trainer's model`);
      }
      const { nextBatch } = saved.train.position;
      if (nextBatch >= session.batchesPerEpoch()) {
        throw new CheckpointError(path.join(folder, STATE_FILE), `train.position.nextBatch must be below the ${session.batchesPerEpoch()} batches of an epoch of this run; got ${nextBatch}`);
      }
      await model.readWeights(modelFile(folder));
      this.checkNotDisposed();
      session.setState({ ...saved.train, optimizer: saved.optimizer });
      this.scaler?.update(saved.train.scaler);
      meta = { ...saved.meta, options: meta.options };
    }
    await fs.promises.mkdir(this.outDir, { recursive: true });

    const stop = () => session.stop();
    opts.signal?.addEventListener('abort', stop);
    let interrupted = false;
    try {
      // The counters (position, scaler) are read without copying the optimizer's tensors; those
      // are copied once per checkpoint.
      while (session.getCounters().position.epoch < epochs) {
        if (opts.signal?.aborted) {
          interrupted = true;
          break;
        }
        const epoch = session.getCounters().position.epoch;
        const result = await session.trainEpoch((p) => {
          this.emit('batch', { ...p, imagesPerSecond: p.seconds > 0 ? p.images / p.seconds : 0 } satisfies BatchEvent);
        });
        // dispose() during the epoch: stop here, and write nothing from a model being freed.
        this.checkNotDisposed();
        this.ranFusedAdam = result.fusedAdam;
        if (result.divergedBatch !== undefined) throw this.divergedError(epoch, result.divergedBatch, checkpoints);
        this.scaler?.update(session.getCounters().scaler);
        if (!result.completed) {
          interrupted = true;
          await this.saveCheckpoint(checkpoints, ['last'], meta);
          break;
        }
        const val = await this.evaluateSplit('val');
        this.checkNotDisposed();
        const record: EpochRecord = {
          epoch: epoch + 1,
          trainLoss: result.loss,
          trainAccuracy: result.accuracy,
          valLoss: val.loss,
          valAccuracy: val.accuracy,
          lr: result.lr,
          lossScale: result.lossScale,
          seconds: result.seconds,
          imagesPerSecond: result.seconds > 0 ? result.images / result.seconds : 0,
          skippedSteps: result.skippedSteps,
        };
        meta.history.push(record);
        const best = val.accuracy > meta.bestValAccuracy;
        if (best) {
          meta.bestValAccuracy = val.accuracy;
          meta.bestEpoch = record.epoch;
        }
        // best before last: a kill between the two leaves last at the epoch before, whose resume redoes this one.
        await this.saveCheckpoint(checkpoints, best ? ['best', 'last'] : ['last'], meta);
        await this.writeHistory(meta);
        this.emit('epoch', record);
      }
    } finally {
      opts.signal?.removeEventListener('abort', stop);
    }
    await this.writeHistory(meta);
    if (!interrupted) await this.writeMetrics(meta);
    return { outDir: this.outDir, epochs: meta.history, interrupted, bestEpoch: meta.bestEpoch };
  }

  private divergedError(epoch: number, batch: number, checkpoints: string): TrainingDivergedError {
    const last = findCheckpoint(checkpoints, 'last');
    const kept = last ? `the last finite checkpoint is kept in ${last}` : 'no checkpoint was written before it';
    const { lr } = this.resolvedOptions().optimizer as Required<OptimizerOptions>;
    return new TrainingDivergedError(
      `training diverged: the loss became NaN or infinite at epoch ${epoch + 1}, batch ${batch + 1} of ` +
        `${this.session!.batchesPerEpoch()}; ${kept}. Try a lower learning rate than ${lr}.`,
      epoch + 1,
      batch + 1,
    );
  }

  /** Loss, accuracy, per-class accuracy and the confusion matrix of the current weights. */
  async evaluate(split: 'val' | 'test' = 'test'): Promise<EvalResult> {
    await this.prepare();
    return this.withModelOwned('Trainer.evaluate()', () => this.evaluateSplit(split));
  }

  private async evaluateSplit(split: 'val' | 'test'): Promise<EvalResult> {
    this.checkNotDisposed();
    const classNames = this.splits!.classNames;
    const classes = (this.model!.options as { numClasses: number }).numClasses;
    const r = await this.session!.evaluate(this.devices.get(split)!.nativeHandle, this.options.evalBatchSize ?? this.options.batchSize ?? 128, classes);
    const confusion = Array.from({ length: classes }, (_, i) => Array.from(r.confusion.subarray(i * classes, (i + 1) * classes)));
    const perClassAccuracy = confusion.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0);
      return total ? row[i] / total : 0;
    });
    return { split, loss: r.loss, accuracy: r.accuracy, images: r.images, classNames, perClassAccuracy: perClassAccuracy.slice(0, classNames.length), confusion };
  }

  /** Loads weights (a checkpoint folder or a safetensors file) into the trainer's model. */
  async loadWeights(file: string): Promise<void> {
    await this.prepare();
    if (this.lease) throw new Error('cannot load weights while fit() or evaluate() runs');
    const weights = fs.statSync(file).isDirectory() ? modelFile(file) : file;
    await this.model!.loadSafetensors(weights);
  }

  /** The model being trained (built on first use). */
  async getModel(): Promise<Xception | InceptionV3> {
    await this.prepare();
    return this.model!;
  }

  /** Writes the checkpoints `names` (e.g. last and best) from one copy of the training state. */
  private async saveCheckpoint(dir: string, names: string[], meta: RunMeta): Promise<void> {
    const model = this.model!;
    const state = this.session!.getState();
    for (const name of names) {
      this.checkNotDisposed();
      await writeCheckpoint(dir, name, (file) => model.writeWeights(file), state, meta);
    }
  }

  private async writeHistory(meta: RunMeta): Promise<void> {
    await writeFileAtomic(path.join(this.outDir, 'history.json'), JSON.stringify({ options: meta.options, epochs: meta.history }, null, 2) + '\n');
    await writeFileAtomic(path.join(this.outDir, 'history.csv'), formatHistoryCsv(meta.history));
  }

  private async writeMetrics(meta: RunMeta): Promise<void> {
    const test = await this.evaluateSplit('test');
    const info = runtimeInfo();
    const trainingSeconds = meta.history.reduce((s, e) => s + e.seconds, 0);
    const images = meta.history.reduce((s, e) => s + e.imagesPerSecond * e.seconds, 0);
    const metrics = {
      model: meta.model,
      parameters: this.model!.parameterCount(),
      testAccuracy: test.accuracy,
      testLoss: test.loss,
      trainingSeconds,
      imagesPerSecond: trainingSeconds > 0 ? images / trainingSeconds : 0,
      epochs: meta.history.length,
      bestEpoch: meta.bestEpoch,
      bestValAccuracy: meta.bestValAccuracy,
      perClassAccuracy: Object.fromEntries(test.classNames.map((c, i) => [c, test.perClassAccuracy[i]])),
      options: meta.options,
      runtime: {
        libtorch: info.libtorchVersion, device: this.model!.device, cuda: info.cudaAvailable, threads: info.threads, fusedAdam: this.ranFusedAdam,
      },
    };
    await writeFileAtomic(path.join(this.outDir, 'metrics.json'), JSON.stringify(metrics, null, 2) + '\n');
  }

  /**
   * Frees the native training state, the datasets and, when the Trainer built it, the model (a
   * model you passed in is yours to dispose). A running fit() stops at its next batch and rejects
   * without writing anything more; the Trainer cannot be used afterwards.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.session?.stop();
    this.session?.dispose();
    this.session = undefined;
    for (const dataset of this.devices.values()) dataset.dispose();
    this.devices.clear();
    this.lease?.release();
    this.lease = undefined;
    if (typeof this.options.model === 'string') this.model?.dispose();
    this.model = undefined;
  }
}
