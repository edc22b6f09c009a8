// The models: typed wrappers over the native Xception and Inception V3 (native/xception.cpp,
// native/inception_v3.cpp). Weights move in and out as safetensors with PyTorch's names.
import { native, NativeFoldingInfo, NativeLayerRow, NativeModelHandle, NativeSummary, tensorEntries } from './native';
import { fromNative, ModelError } from './errors';
import { LIMITS } from './limits';
import { readSafetensors, SafetensorsTensor, writeSafetensors } from './safetensors';
import { LoadWeightsOptions, LoadWeightsResult, matchWeights, readWeightsFile } from './weights/load-weights';
import { resolveDevice } from './runtime';

export type Device = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export type ModelName = 'xception' | 'inception_v3';

/** A dense float32 tensor, contiguous and row-major (NCHW for images). */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** One row of `summary()`: a top-level stage of the network, like torchinfo's depth-1 table. */
export type LayerSummary = NativeLayerRow;

/** `summary()`: the stages (`layers`), trainable `parameters`, and `macs` of one eval-mode image. */
export type ModelSummary = NativeSummary;

/** Whether eval passes fold BatchNorm into the convolutions, over how many pairs, and how often the folded weights were computed. */
export type BatchNormFolding = NativeFoldingInfo;

export interface Model {
  readonly name: ModelName;
  /** Trainable parameters, as PyTorch's `sum(p.numel() for p in m.parameters())` counts them. */
  parameterCount(): number;
  /** The names PyTorch's `state_dict()` would list, BatchNorm buffers included, in its order. */
  stateDictKeys(): string[];
  loadSafetensors(path: string, opts?: { strict?: boolean }): Promise<void>;
  /**
   * Loads a `.safetensors` file or a PyTorch `torch.save` state dict (`.pth`, `.pt`, `.bin`, PyTorch
   * >= 1.6), told apart by content; `resetHead` keeps the model's own classifier when its shape differs.
   */
  loadWeights(path: string, opts?: LoadWeightsOptions): Promise<LoadWeightsResult>;
  saveSafetensors(path: string): Promise<void>;
  train(): this;
  eval(): this;
  to(device: Device): this;
  /** Logits for a batch [N, 3, H, W]; runs off the event loop. */
  forward(x: TensorData): Promise<TensorData>;
  /** One eval-mode pass of a zero image, off the event loop: each stage's output shape, parameters and MACs. */
  summary(imageSize?: number): Promise<ModelSummary>;
  /**
   * Eval-mode forward passes (forward(), evaluation) run each convolution and the BatchNorm after
   * it as one convolution with folded weights: a copy, recomputed after the weights change, that
   * leaves the state dict alone. On by default; off runs the layers as they are.
   */
  setBatchNormFolding(enabled: boolean): this;
  batchNormFolding(): BatchNormFolding;
  dispose(): void;
}

export interface XceptionOptions {
  /** Classifier outputs. Default 1000. */
  numClasses?: number;
  /** What sits between the depthwise and pointwise convolutions; the paper's choice is 'none'. */
  intermediateActivation?: 'none' | 'relu' | 'elu';
  /** Residual blocks in the middle flow. Default 8. */
  middleFlowBlocks?: number;
  /** Dropout before the classifier. Default 0. */
  dropout?: number;
  /** 'paper' (default) or 'notebook': the reference notebook's stem (bias, padding 1) and skips (bias, no BN). */
  variant?: 'paper' | 'notebook';
}

export interface InceptionV3Options {
  /** Classifier outputs. Default 1000. */
  numClasses?: number;
  /** Build the auxiliary classifier (used in training mode). Default true. */
  auxLogits?: boolean;
  /** Re-normalise ImageNet-normalised input to the (x - 0.5) / 0.5 convention. Default false. */
  transformInput?: boolean;
  /** Dropout before the classifier. Default 0.5. */
  dropout?: number;
  /** torchvision's truncated-normal initialisation. Default true. */
  initWeights?: boolean;
}

export { ModelError };

// ---- option validation ----------------------------------------------------------------------

type Check = (value: unknown) => string | undefined;  // a problem, or undefined when fine

const integerIn = (min: number, max: number): Check => (v) =>
  (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? undefined : `an integer from ${min} to ${max}`);
const probability: Check = (v) => (typeof v === 'number' && v >= 0 && v < 1 ? undefined : 'a number in [0, 1)');
const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'true or false');
const oneOf = (...choices: string[]): Check => (v) =>
  choices.includes(v as string) ? undefined : choices.map((c) => `'${c}'`).join(' or ');

function validateOptions<T extends object>(model: string, options: T, checks: Record<keyof T & string, Check>): T {
  if (typeof options !== 'object' || options === null) throw new ModelError(`${model} options must be an object`);
  for (const [key, value] of Object.entries(options)) {
    const check = (checks as Record<string, Check>)[key];
    if (!check) throw new ModelError(`unknown ${model} option '${key}' (known: ${Object.keys(checks).join(', ')})`);
    if (value === undefined) continue;
    const expected = check(value);
    if (expected) throw new ModelError(`${model} option ${key} must be ${expected}; got ${JSON.stringify(value)}`);
  }
  return options;
}

// ---- the shared implementation ----------------------------------------------------------------

/**
 * @internal What a Trainer holds while it trains a model: calls from outside the job are refused,
 * and the job's own native work starts only once the forward passes in flight have finished.
 */
export interface TrainingJobLease {
  release(): void;
}

abstract class NativeBackedModel implements Model {
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
    const { entries, result } = matchWeights(tensors, this.handle.stateDictInfo(), { ...opts, source: path, into: this.displayName });
    this.native((h) => h.setState(entries));
    return result;
  }

  async saveSafetensors(path: string): Promise<void> {
    this.checkNotTraining('saveSafetensors()');
    return this.writeWeights(path);
  }

  /** @internal saveSafetensors for the training job that owns the model. */
  async writeWeights(path: string): Promise<void> {
    const state = this.native((h) => h.getState());
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
    const pass = this.native((h) => h.forward(x.data, x.shape));
    this.inFlight.add(pass);
    try {
      return await pass;
    } catch (error) {
      throw fromNative(error);
    } finally {
      this.inFlight.delete(pass);
    }
  }

  async summary(imageSize = 299): Promise<ModelSummary> {
    if (!Number.isSafeInteger(imageSize) || imageSize < 1 || imageSize > LIMITS.imageSize) {
      throw new ModelError(`imageSize must be an integer from 1 to ${LIMITS.imageSize}; got ${imageSize}`);
    }
    this.checkNotTraining('summary()');
    const pass = this.native((h) => h.summary(imageSize));
    this.inFlight.add(pass);
    try {
      return await pass;
    } catch (error) {
      throw fromNative(error);
    } finally {
      this.inFlight.delete(pass);
    }
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
  private native<T>(call: (handle: NativeModelHandle) => T): T {
    const handle = this.handle;
    try {
      return call(handle);
    } catch (error) {
      throw fromNative(error);
    }
  }
}

export class Xception extends NativeBackedModel {
  readonly name = 'xception' as const;
  protected readonly displayName = 'Xception';
  readonly options: Readonly<Required<XceptionOptions>>;

  constructor(options: XceptionOptions = {}) {
    validateOptions('Xception', options, {
      numClasses: integerIn(1, LIMITS.numClasses),
      intermediateActivation: oneOf('none', 'relu', 'elu'),
      middleFlowBlocks: integerIn(0, LIMITS.middleFlowBlocks),
      dropout: probability,
      variant: oneOf('paper', 'notebook'),
    });
    const resolved: Required<XceptionOptions> = {
      numClasses: 1000, intermediateActivation: 'none', middleFlowBlocks: 8, dropout: 0, variant: 'paper',
      ...stripUndefined(options),
    };
    super('xception', resolved);
    this.options = Object.freeze(resolved);
  }
}

export class InceptionV3 extends NativeBackedModel {
  readonly name = 'inception_v3' as const;
  protected readonly displayName = 'InceptionV3';
  readonly options: Readonly<Required<InceptionV3Options>>;

  constructor(options: InceptionV3Options = {}) {
    validateOptions('InceptionV3', options, {
      numClasses: integerIn(1, LIMITS.numClasses),
      auxLogits: boolean,
      transformInput: boolean,
      dropout: probability,
      initWeights: boolean,
    });
    const resolved: Required<InceptionV3Options> = {
      numClasses: 1000, auxLogits: true, transformInput: false, dropout: 0.5, initWeights: true,
      ...stripUndefined(options),
    };
    super('inception_v3', resolved);
    this.options = Object.freeze(resolved);
  }

  /**
   * 299 with the auxiliary classifier: torchvision's aux head pools Mixed_6e's 17x17 map with a 5x5
   * window of stride 3 and then needs 5x5, which smaller crops do not leave.
   */
  override minTrainingInputSize(): number {
    return this.options.auxLogits ? 299 : this.minInputSize();
  }

  protected override trainingCropProblem(min: number, crop: number): string {
    if (!this.options.auxLogits) return super.trainingCropProblem(min, crop);
    return `Inception V3's auxiliary classifier needs training crops of at least ${min}x${min} (got ${crop}x${crop}): ` +
      'build the model with auxLogits: false (CLI: --no-aux-logits), or train at 299';
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface ModelOptionsByName {
  xception: XceptionOptions;
  inception_v3: InceptionV3Options;
}

export const MODEL_NAMES: readonly ModelName[] = ['xception', 'inception_v3'];

export function createModel<N extends ModelName>(name: N, options?: ModelOptionsByName[N]): Xception | InceptionV3 {
  switch (name) {
    case 'xception':
      return new Xception(options as XceptionOptions);
    case 'inception_v3':
      return new InceptionV3(options as InceptionV3Options);
    default:
      throw new ModelError(`unknown model '${String(name)}' (expected ${MODEL_NAMES.map((m) => `'${m}'`).join(' or ')})`);
  }
}
