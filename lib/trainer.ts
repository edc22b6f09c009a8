// The Trainer: decides what runs (model, data, options, epochs, files) and hands every batch loop
// to the native training session (native/training.cpp), which runs it on a worker thread.
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { removeStaleTemporaries } from './atomic-write';
import { copyCheckpoint, findCheckpoint, modelFile, removeSupersededCheckpoints, writeCheckpoint } from './checkpoint';
import type { FeedPhase } from './datasets/folder-feeder';
import { imageFolderClasses } from './datasets/image-folder';
import { TrainingDivergedError } from './errors';
import { EvalResult, toEvalResult } from './eval-result';
import { GradScaler } from './grad-scaler';
import { createModel, Device, InceptionV3, TrainingJobLease, Xception } from './models';
import type { LoadWeightsResult } from './weights/load-weights';
import { native, NativeProcessGroupHandle, NativeTrainerHandle, NativeTrainProgress } from './native';
import { recordBatch, recordEpoch, recordTest } from './report/training-curves';
import { TensorBoardWriter } from './report/tensorboard';
import { readResumeCheckpoint } from './resume';
import type { EpochRecord, RunMeta } from './run-files';
import { epochRecord, writeHistory, writeMetrics } from './run-records';
import { withRunLock } from './run-lock';
import { setNumThreads } from './runtime';
import { joinProcessGroup } from './distributed/process-group';
import { disposeData, loadTrainingData, trainFeedPhase, TrainingData } from './training-data';
import { resolveTrainerOptions, ResolvedTrainerOptions, TrainerOptions } from './trainer-options';

export type { EpochRecord, EvalResult };
export type { AmpOption, OptimizerOptions, ResolvedTrainerOptions, TrainerOptions } from './trainer-options';
export { resolveTrainerOptions, TRAINER_DEFAULTS } from './trainer-options';


export interface History {
  outDir: string;
  epochs: EpochRecord[];
  /** True when fit() was stopped (AbortSignal) before the last epoch ended. */
  interrupted: boolean;
  bestEpoch?: number;
}

/** The 'initWeights' event: what the initWeights file gave the model. */
export interface InitWeightsEvent extends LoadWeightsResult {
  file: string;
}

export interface BatchEvent extends NativeTrainProgress {
  imagesPerSecond: number;
}

/** runs/<prefix>-<timestamp>, e.g. runs/xception-2025-01-01T12-00-00-000Z (the timestamp sorts and is a valid file name). */
export function defaultRunDir(prefix: string, now = new Date()): string {
  return path.resolve('runs', `${prefix}-${now.toISOString().replace(/[:.]/g, '-')}`);
}

export class Trainer extends EventEmitter {
  readonly options: Readonly<TrainerOptions>;
  private readonly settings: ResolvedTrainerOptions;
  readonly outDir: string;
  private model?: Xception | InceptionV3;
  private data?: TrainingData;
  private session?: NativeTrainerHandle;
  /** Data-parallel: the c10d process group this process trains in. */
  private group?: NativeProcessGroupHandle;
  private scaler?: GradScaler;
  /** Set by dispose(): every later call is refused, and a running fit() stops without writing. */
  private disposed = false;
  /** The training job's hold on the model while fit() or evaluate() runs. */
  private lease?: TrainingJobLease;
  /** Whether the last epoch's optimizer ran the fused kernels (recorded in metrics.json). */
  private ranFusedAdam = false;

  constructor(options: TrainerOptions) {
    super();
    this.settings = resolveTrainerOptions(options);
    this.options = options;
    this.outDir = path.resolve(options.outDir ?? defaultRunDir(this.settings.model));
  }

  /** This process's rank in its data-parallel group (0 alone). */
  get rank(): number {
    return this.settings.distributed?.rank ?? 0;
  }

  /** The processes training together (1 alone). */
  get worldSize(): number {
    return this.settings.distributed?.worldSize ?? 1;
  }

  /**
   * Whether this process writes the run folder (history, metrics, checkpoints, TensorBoard) and
   * holds its lock: alone, or rank 0 of a group. The other ranks train and evaluate in step, silent.
   */
  get ownsRunFolder(): boolean {
    return this.rank === 0;
  }

  /** The options as they will run, defaults filled in (written to history.json and metrics.json). */
  resolvedOptions(): ResolvedTrainerOptions {
    return this.settings;
  }

  private checkNotDisposed(): void {
    if (this.disposed) throw new Error('this Trainer was disposed; create a new one');
  }

  private async prepare(): Promise<void> {
    this.checkNotDisposed();
    if (this.session) return;
    const o = this.options;
    const s = this.settings;
    if (o.threads) setNumThreads(o.threads);
    // The model first: what it accepts is checked before the data loads.
    const model = await this.buildModel();
    model.to(s.device as Device);
    const data = await loadTrainingData(o, s, s.device as Device, (error) => this.emit('badImage', error));
    try {
      // dispose() while the data loaded: build nothing more.
      this.checkNotDisposed();
      const classes = (model.options as { numClasses: number }).numClasses;
      if (classes < data.classNames.length) {
        throw new RangeError(`the model has ${classes} outputs but the dataset has ${data.classNames.length} classes`);
      }
    } catch (error) {
      disposeData(data);
      throw error;
    }
    this.data = data;
    this.scaler = o.gradScaler === false ? undefined : o.gradScaler ?? (s.amp === 'fp16' ? new GradScaler() : undefined);
    if (s.distributed) {
      // The rendezvous (once per process): resolves once every rank has joined, or fails after the timeout.
      this.group = await joinProcessGroup(s.distributed);
      this.checkNotDisposed();
    }
    this.session = new (native().NativeTrainer)(model.nativeHandle, data.splits.train.handle, {
      group: this.group,
      batchSize: s.batchSize,
      epochs: s.epochs,
      optimizer: s.optimizer.type,
      lr: s.optimizer.lr,
      beta1: s.optimizer.betas[0],
      beta2: s.optimizer.betas[1],
      eps: s.optimizer.eps,
      weightDecay: s.optimizer.weightDecay,
      schedule: s.schedule,
      labelSmoothing: s.labelSmoothing,
      auxLossWeight: s.auxLossWeight,
      amp: s.amp,
      scaler: this.scaler?.toNative(),
      seed: s.seed,
      preprocessing: s.preprocessing,
      channelsLast: s.channelsLast,
      cudnnBenchmark: s.cudnnBenchmark,
      fusedAdam: s.fusedAdam,
      freezeBackbone: s.freezeBackbone,
      progressEvery: s.progressEvery,
    });
  }

  /**
   * Builds the model to train (once; seeded from the options) and checks that it takes the training
   * crops (a RangeError otherwise), without loading any data.
   */
  async buildModel(): Promise<Xception | InceptionV3> {
    this.checkNotDisposed();
    if (this.model) return this.model;
    const o = this.options;
    const s = this.settings;
    // An image folder's model gets one output per class unless told otherwise.
    if (typeof o.model === 'string' && s.imageFolder && s.modelOptions.numClasses === undefined) {
      s.modelOptions.numClasses = Math.max(1, (await imageFolderClasses(s.dataDir!)).length);
    }
    // The same seed gives the same initial weights.
    if (typeof o.model === 'string') native().manualSeed(s.seed);
    const model = typeof o.model === 'string' ? createModel(o.model, s.modelOptions as never) : o.model;
    try {
      model.checkTrainingCrop(s.preprocessing.crop);
      if (s.initWeights) {
        // The backbone from the file, a classifier of another shape left fresh; the event says which.
        const result = await model.loadWeights(s.initWeights, { resetHead: true });
        this.emit('initWeights', { file: s.initWeights, ...result } satisfies InitWeightsEvent);
      }
    } catch (error) {
      // A model this Trainer built is its own to free; one passed in stays the caller's.
      if (model !== o.model) model.dispose();
      throw error;
    }
    this.model = model;
    return model;
  }

  /**
   * Trains for the configured epochs (from the last checkpoint with `resume`), evaluating on the
   * validation split after each epoch and writing history, metrics and checkpoints to outDir.
   * `signal` stops after the current batch, writes a checkpoint, and resolves with
   * `interrupted: true`; `fit({ resume: true })` then continues exactly where it stopped.
   */
  async fit(opts: { signal?: AbortSignal; resume?: boolean } = {}): Promise<History> {
    // One run per folder at a time (lib/run-lock.ts); what killed runs left half written goes first.
    if (!this.ownsRunFolder) return this.fitLocked(opts);  // rank 0 holds the lock for the group
    return withRunLock(this.outDir, async () => {
      await removeStaleTemporaries(this.outDir);
      await removeStaleTemporaries(path.join(this.outDir, 'checkpoints'));
      await removeSupersededCheckpoints(path.join(this.outDir, 'checkpoints'));
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
    const epochs = this.settings.epochs;
    const checkpoints = path.join(this.outDir, 'checkpoints');
    let meta: RunMeta = {
      model: this.settings.model, modelOptions: this.settings.modelOptions, options: { ...this.settings }, history: [], bestValAccuracy: -1,
      classNames: this.data!.classNames,
    };
    if (opts.resume) {
      const { folder, saved } = await readResumeCheckpoint(checkpoints, meta, session.batchesPerEpoch());
      await model.readWeights(modelFile(folder));
      this.checkNotDisposed();
      session.setState({ ...saved.train, optimizer: saved.optimizer });
      this.scaler?.update(saved.train.scaler);
      meta = { ...saved.meta, options: meta.options, classNames: meta.classNames };
    }
    const owner = this.ownsRunFolder;
    if (owner) await fs.promises.mkdir(this.outDir, { recursive: true });

    const stop = () => session.stop();
    opts.signal?.addEventListener('abort', stop);
    let interrupted = false;
    // Live curves for TensorBoard: a new event file per fit(), beside the run's others.
    const curves = owner ? new TensorBoardWriter(this.outDir) : undefined;
    try {
      // The counters (position, scaler) are read without copying the optimizer's tensors; those
      // are copied once per checkpoint.
      while (session.getCounters().position.epoch < epochs) {
        if (opts.signal?.aborted) {
          interrupted = true;
          break;
        }
        const { epoch, nextBatch } = session.getCounters().position;
        const result = await this.data!.splits.train.run(() => trainFeedPhase(session, this.settings, this.rank, epoch, nextBatch), () => session.trainEpoch((p) => {
          const event: BatchEvent = { ...p, imagesPerSecond: p.seconds > 0 ? p.images / p.seconds : 0 };
          if (curves) recordBatch(curves, event);
          this.emit('batch', event);
        }));
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
        const record = epochRecord(epoch, result, val, this.group !== undefined);
        meta.history.push(record);
        const best = val.accuracy > meta.bestValAccuracy;
        if (best) {
          meta.bestValAccuracy = val.accuracy;
          meta.bestEpoch = record.epoch;
        }
        // best before last: a kill between the two leaves last at the epoch before, whose resume redoes this one.
        await this.saveCheckpoint(checkpoints, best ? ['best', 'last'] : ['last'], meta);
        if (owner) await writeHistory(this.outDir, meta);
        if (curves) recordEpoch(curves, record);
        this.emit('epoch', record);
      }
      if (owner) await writeHistory(this.outDir, meta);
      if (!interrupted) await this.writeMetrics(meta, curves);
    } finally {
      opts.signal?.removeEventListener('abort', stop);
      curves?.close();
    }
    return { outDir: this.outDir, epochs: meta.history, interrupted, bestEpoch: meta.bestEpoch };
  }

  private divergedError(epoch: number, batch: number, checkpoints: string): TrainingDivergedError {
    const last = findCheckpoint(checkpoints, 'last');
    const kept = last ? `the last finite checkpoint is kept in ${last}` : 'no checkpoint was written before it';
    const { lr } = this.settings.optimizer;
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
    const { classNames, splits } = this.data!;
    const classes = (this.model!.options as { numClasses: number }).numClasses;
    // Data-parallel: each rank evaluates its share of the split with its share of the batch.
    const batchSize = Math.ceil(this.settings.evalBatchSize / this.worldSize);
    const source = splits[split];
    const phase: FeedPhase = { kind: 'eval', batchSize, rank: this.rank, worldSize: this.worldSize };
    const r = await source.run(() => phase, () => this.session!.evaluate(source.handle, batchSize, classes));
    return toEvalResult(split, r, classNames, classes);
  }

  /** Loads weights (a checkpoint folder or a safetensors file) into the trainer's model. */
  async loadWeights(file: string): Promise<void> {
    await this.prepare();
    if (this.lease) throw new Error('cannot load weights while fit() or evaluate() runs');
    const weights = fs.statSync(file).isDirectory() ? modelFile(file) : file;
    await this.model!.loadSafetensors(weights);
  }

  /**
   * The training images (indices into the training split) this process sees in `epoch` (0-based),
   * in order: the seeded permutation of the split, or with data-parallel training this rank's share
   * of it as torch.utils.data.DistributedSampler splits it.
   */
  async epochIndices(epoch: number): Promise<Int32Array> {
    await this.prepare();
    if (!Number.isSafeInteger(epoch) || epoch < 0) throw new RangeError(`epoch must be a non-negative integer; got ${epoch}`);
    return this.session!.epochIndices(epoch);
  }

  /** The model being trained (built on first use). */
  async getModel(): Promise<Xception | InceptionV3> {
    await this.prepare();
    return this.model!;
  }

  /**
   * Writes the checkpoints `names` (e.g. last and best) of the training state. The files are written
   * from the tensors' own memory (no copy): fit() awaits this before the next epoch changes them.
   */
  private async saveCheckpoint(dir: string, names: string[], meta: RunMeta): Promise<void> {
    if (!this.ownsRunFolder) return;
    const model = this.model!;
    const state = this.session!.getState(true);
    this.checkNotDisposed();
    const written = await writeCheckpoint(dir, names[0], (file) => model.writeWeights(file), state, meta);
    for (const name of names.slice(1)) {
      this.checkNotDisposed();
      await copyCheckpoint(dir, name, written);
    }
  }

  private async writeMetrics(meta: RunMeta, curves: TensorBoardWriter | undefined): Promise<void> {
    const test = await this.evaluateSplit('test');  // on every rank: a collective when data-parallel
    if (!curves || !this.ownsRunFolder) return;
    recordTest(curves, test, meta.history.length);
    await writeMetrics(this.outDir, meta, test, this.model!.parameterCount(), {
      device: this.model!.device, fusedAdam: this.ranFusedAdam, worldSize: this.worldSize, backend: this.settings.distributed?.backend ?? null,
    });
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
    if (this.data) disposeData(this.data);
    this.data = undefined;
    // The process group stays joined for the process's next Trainer (lib/distributed/process-group.ts).
    this.group = undefined;
    this.lease?.release();
    this.lease = undefined;
    if (typeof this.options.model === 'string') this.model?.dispose();
    this.model = undefined;
  }
}
