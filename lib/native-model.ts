// The implementation every model shares: a native model (native/network.h) behind the Model
// interface, its weights moved as safetensors, its native errors kept in kind, and the lease a
// Trainer holds while it trains it.
import { native, NativeModelHandle, tensorEntries } from './native';
import { fromNative, ModelError } from './errors';
import { LIMITS } from './limits';
import type { BatchNormFolding, Device, Model, ModelName, ModelSummary, TensorData } from './model-types';
import { readSafetensors, SafetensorsTensor, writeSafetensors } from './safetensors';
import { LoadWeightsOptions, LoadWeightsResult, matchWeights, readWeightsFile } from './weights/load-weights';
import { resolveDevice } from './runtime';

/**
 * @internal What a Trainer holds while it trains a model: calls from outside the job are refused,
 * and the job's own native work starts only once the forward passes in flight have finished.
 */
export interface TrainingJobLease {
  release(): void;
}

/** What Xception and InceptionV3 share: the native model's handle and every call through it (not part of the public API). */
export abstract class NativeBackedModel implements Model {
  abstract readonly name: ModelName;
  protected abstract readonly displayName: string;
  private handleOrNull: NativeModelHandle | null;
  /** The forward passes running on a worker thread. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** Set while a Trainer's fit() or evaluate() owns the model. */
  private job: string | undefined;

  protected constructor(modelName: ModelName, options: object) {
    try {
      this.handleOrNull = new (native().NativeModel)(modelName, options);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /**
   * @internal Claims the model for a training job (`what`, e.g. 'Trainer.fit()'): waits for the
   * forward passes in flight, then refuses forward(), weight loads, moves and mode switches from
   * outside the job until the lease is released.
   */
  async claimForTraining(what: string): Promise<TrainingJobLease> {
    if (this.job) throw new ModelError(`this ${this.displayName} is already being trained (${this.job})`);
    this.job = what;
    await Promise.allSettled([...this.inFlight]);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.job = undefined;
      },
    };
  }

  /** Refuses a call from outside the training job that owns the model. */
  private checkNotTraining(call: string): void {
    if (this.job) {
      throw new ModelError(
        `${this.displayName}.${call} is refused while ${this.job} trains this model: the weights are changing ` +
          'and the model is in training mode. Await fit() first (Trainer.evaluate() scores the model).',
      );
    }
  }

  /** @internal The addon's handle, for the Trainer. */
  get nativeHandle(): NativeModelHandle {
    return this.handle;
  }

  protected get handle(): NativeModelHandle {
    if (!this.handleOrNull) throw new ModelError(`this ${this.displayName} was disposed`);
    return this.handleOrNull;
  }

  parameterCount(): number {
    return this.handle.parameterCount();
  }

  stateDictKeys(): string[] {
    return this.handle.stateDictInfo().map((t) => t.name);
  }

  async loadSafetensors(path: string, opts: { strict?: boolean } = {}): Promise<void> {
    this.checkNotTraining('loadSafetensors()');
    return this.readWeights(path, opts);
  }

  /** @internal loadSafetensors for the training job that owns the model. */
  async readWeights(path: string, opts: { strict?: boolean } = {}): Promise<void> {
    const file = await readSafetensors(path);
    this.applyWeights(path, file.tensors, { strict: opts.strict });
  }

  async loadWeights(path: string, opts: LoadWeightsOptions = {}): Promise<LoadWeightsResult> {
    this.checkNotTraining('loadWeights()');
    const file = await readWeightsFile(path);
    this.checkNotTraining('loadWeights()');
    return this.applyWeights(path, file.tensors, opts);
  }

  /** Checks the tensors against the state dict (lib/weights/load-weights.ts), then copies them in. */
  private applyWeights(path: string, tensors: Map<string, SafetensorsTensor>, opts: LoadWeightsOptions): LoadWeightsResult {
    const { entries, result } = matchWeights(tensors, this.handle.stateDictInfo(), {
      ...opts, source: path, into: this.displayName, classifier: this.classifierModules(),
    });
    this.native((h) => h.setState(entries));
    return result;
  }

  async saveSafetensors(path: string): Promise<void> {
    this.checkNotTraining('saveSafetensors()');
    // From a copy: the caller may change the weights before the file is written.
    return this.writeStateDict(path, false);
  }

  /**
   * @internal saveSafetensors for the training job that owns the model: written from the weights'
   * own memory, not a copy, as nothing changes them while the job awaits the write.
   */
  async writeWeights(path: string): Promise<void> {
    return this.writeStateDict(path, true);
  }

  private async writeStateDict(path: string, shareMemory: boolean): Promise<void> {
    const state = this.native((h) => h.getState(shareMemory));
    await writeSafetensors(path, tensorEntries(state), { format: 'pt', producer: 'xception-torch', model: this.name });
  }

  train(): this {
    this.checkNotTraining('train()');
    this.native((h) => h.setTraining(true));
    return this;
  }

  eval(): this {
    this.checkNotTraining('eval()');
    this.native((h) => h.setTraining(false));
    return this;
  }

  get training(): boolean {
    return this.handle.isTraining();
  }

  to(device: Device): this {
    this.checkNotTraining('to()');
    const resolved = resolveDevice(device);
    this.native((h) => h.to(resolved));
    return this;
  }

  /** The device the weights are on, as libtorch names it ('cpu', 'cuda:0'). */
  get device(): string {
    return this.handle.device();
  }

  async forward(x: TensorData): Promise<TensorData> {
    if (!x || !(x.data instanceof Float32Array) || !Array.isArray(x.shape)) {
      throw new ModelError(`${this.displayName}.forward expects { shape: number[], data: Float32Array }`);
    }
    this.checkNotTraining('forward()');
    return this.onWorker((h) => h.forward(x.data, x.shape));
  }

  async summary(imageSize = 299): Promise<ModelSummary> {
    if (!Number.isSafeInteger(imageSize) || imageSize < 1 || imageSize > LIMITS.imageSize) {
      throw new ModelError(`imageSize must be an integer from 1 to ${LIMITS.imageSize}; got ${imageSize}`);
    }
    this.checkNotTraining('summary()');
    return this.onWorker((h) => h.summary(imageSize));
  }

  /**
   * Multiply-accumulates of one forward pass of one image in eval mode (convolutions and linear
   * layers, as thop/fvcore count them): Xception 8.36 G and Inception V3 5.71 G at 299x299.
   */
  async multiplyAccumulates(imageSize = 299): Promise<number> {
    return (await this.summary(imageSize)).macs;
  }

  setBatchNormFolding(enabled: boolean): this {
    if (typeof enabled !== 'boolean') throw new ModelError(`setBatchNormFolding expects true or false; got ${JSON.stringify(enabled)}`);
    this.checkNotTraining('setBatchNormFolding()');
    this.native((h) => h.setFolding(enabled));
    return this;
  }

  batchNormFolding(): BatchNormFolding {
    return this.native((h) => h.foldingInfo());
  }

  /** The smallest height and width forward() accepts. */
  classifierModules(): string[] {
    return this.native((h) => h.classifierModules());
  }

  minInputSize(): number {
    return this.handle.minInputSize();
  }

  /** The smallest training crop: minInputSize(), unless a training-only head needs more. */
  minTrainingInputSize(): number {
    return this.minInputSize();
  }

  /** Throws a RangeError saying why this model cannot train on `crop`-sized crops, if it cannot. */
  checkTrainingCrop(crop: number): void {
    const min = this.minTrainingInputSize();
    if (crop < min) throw new RangeError(this.trainingCropProblem(min, crop));
  }

  protected trainingCropProblem(min: number, crop: number): string {
    return `${this.displayName} needs crops of at least ${min}x${min} to train (got ${crop}x${crop}; CLI: --image-size)`;
  }

  /** Frees the native weights now rather than at garbage collection. Further calls throw. */
  dispose(): void {
    this.checkNotTraining('dispose()');
    this.handleOrNull?.dispose();
    this.handleOrNull = null;
  }

  // Native errors keep their kind: ModelError for bad input, NativeRuntimeError for failures at
  // run time, each with libtorch's message (no C++ backtrace).
  /** A native call that runs on a worker thread: dispose() waits for it, its errors become ModelErrors. */
  private async onWorker<T>(call: (handle: NativeModelHandle) => Promise<T>): Promise<T> {
    const pass = this.native(call);
    this.inFlight.add(pass);
    try {
      return await pass;
    } catch (error) {
      throw fromNative(error);
    } finally {
      this.inFlight.delete(pass);
    }
  }

  private native<T>(call: (handle: NativeModelHandle) => T): T {
    const handle = this.handle;
    try {
      return call(handle);
    } catch (error) {
      throw fromNative(error);
    }
  }
}
