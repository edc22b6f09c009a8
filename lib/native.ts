// Loads the native addon. Everything in lib/ reaches libtorch through this file alone.
import * as fs from 'fs';
import { ADDON_PATH, BUILD_INFO_PATH, PROJECT_ROOT } from './paths';
import type { NativeTestHooks } from './native-test-hooks';
import type { SafetensorsDtype } from './safetensors';

/** The safetensors dtypes the addon reads and writes. */
export type NativeDtype = Extract<SafetensorsDtype, 'F32' | 'F16' | 'BF16' | 'F64' | 'I64'>;

export const NATIVE_DTYPES: ReadonlySet<string> = new Set<NativeDtype>(['F32', 'F16', 'BF16', 'F64', 'I64']);

export const isNativeDtype = (dtype: string): dtype is NativeDtype => NATIVE_DTYPES.has(dtype);

export interface NativeTensorInfo {
  name: string;
  shape: number[];
  dtype: NativeDtype;
}

export interface NativeTensor extends NativeTensorInfo {
  data: ArrayBuffer;
}

export interface NativeTensorInput extends NativeTensorInfo {
  data: Uint8Array;
}

/** Tensors read out of the addon (copies or views: getState) as [name, { dtype, shape, data }] entries for a safetensors file. */
export function tensorEntries(tensors: NativeTensor[]): Array<[string, { dtype: NativeDtype; shape: number[]; data: Uint8Array }]> {
  return tensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: new Uint8Array(t.data) }]);
}

/** One row of a model summary: a top-level stage of the network, like torchinfo's depth-1 table. */
export interface NativeLayerRow {
  name: string;
  type: string;
  outputShape: number[];
  parameters: number;
  /** Multiply-accumulates of the stage's convolutions and linear layers for one image. */
  macs: number;
  /** True for stages that only run in training mode (Inception V3's aux head). */
  trainingOnly: boolean;
}

/** A model summary (Network::summarize()): its stages and its totals. */
export interface NativeSummary {
  layers: NativeLayerRow[];
  /** Trainable parameters. */
  parameters: number;
  /** Multiply-accumulates of one eval-mode forward pass of one image (training-only stages left out). */
  macs: number;
}

/** The C++ model wrapper (native/addon.cpp). */
export interface NativeModelHandle {
  parameterCount(): number;
  stateDictInfo(): NativeTensorInfo[];
  getState(share?: boolean): NativeTensor[];  // copies; with `share`, views of the tensors (until they change)
  setState(entries: NativeTensorInput[]): void;
  setTraining(training: boolean): void;
  isTraining(): boolean;
  to(device: string): void;
  device(): string;
  forward(data: Float32Array, shape: number[]): Promise<{ shape: number[]; data: Float32Array }>;
  summary(imageSize: number): Promise<NativeSummary>;
  minInputSize(): number;
  classifierModules(): string[];
  setFolding(enabled: boolean): void;
  foldingInfo(): NativeFoldingInfo;
  dispose(): void;
}

/** Eval passes' BatchNorm folding (native/folded_inference.h). */
export interface NativeFoldingInfo {
  enabled: boolean;
  /** conv -> BatchNorm pairs that fold. */
  pairs: number;
  /** Times the folded copy of the weights was computed (after each change of the weights). */
  refreshes: number;
}

/** Preprocessing options as native/addon_data.cpp reads them. */
export interface NativePreprocessing {
  train?: boolean;
  resize?: number;
  evalResize?: number;
  crop?: number;
  flip?: boolean;
  mean?: readonly number[];
  std?: readonly number[];
  strategy?: 'auto' | 'per-image' | 'batched';
}

export type NativeAugmentation = { seed: number } | { offsets: Int32Array; flips: Uint8Array };

export interface NativeBatch {
  shape: number[];
  data: Float32Array;
  labels: Int32Array;
  offsets?: Int32Array;
  flips?: Uint8Array;
}

/** One split's uint8 images on the device (native/data.cpp). */
export interface NativeDatasetHandle {
  size(): number;
  device(): string;
  batch(indices: Int32Array, options: NativePreprocessing, augment?: NativeAugmentation): Promise<NativeBatch>;
  /** Frees the images now; further calls throw. */
  dispose(): void;
}

/** Progress reported from the training loop (every few batches). */
export interface NativeTrainProgress {
  epoch: number;
  batch: number;
  batches: number;
  images: number;
  loss: number;
  accuracy: number;
  seconds: number;
  lr: number;
  lossScale: number;
}

export interface NativeEpochResult {
  completed: boolean;
  images: number;
  batches: number;
  loss: number;
  accuracy: number;
  seconds: number;
  lr: number;
  lossScale: number;
  skippedSteps: number;
  /** Whether the optimizer ran torch.optim's fused kernels (CUDA, libtorch >= 2.0, fusedAdam on). */
  fusedAdam: boolean;
  /** Without a GradScaler: the first batch (0-based) whose loss was NaN or infinite; the epoch stopped there. */
  divergedBatch?: number;
  /** Data-parallel: seconds spent waiting for gradient all-reduces that backward did not hide (0 alone). */
  exposedCommunicationSeconds: number;
}

export interface NativeEvalResult {
  loss: number;
  accuracy: number;
  images: number;
  /** Row-major [classes x classes]: rows are true classes, columns predictions. */
  confusion: Float64Array;
}

export interface NativeTrainState {
  position: {
    epoch: number; nextBatch: number; lossSum: number; correct: number; seen: number; seconds: number;
    pendingLoss: number; pendingCorrect: number;
  };
  optimizerSteps: number;
  scaler: { scale: number; growthTracker: number; skippedSteps: number };
  optimizer: NativeTensor[];
}

export interface PixelBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

/** Batches decoded in JavaScript, handed to an epoch or evaluation running natively (native/fed_batches.h). */
export interface NativeBatchFeedHandle {
  /** The images of the split (training: the length of each epoch's permutation). */
  size(): number;
  /** Starts a phase: drops queued batches and a failure. */
  reset(): void;
  /** Queues a copy of a batch: phase (epoch, or -1 for evaluation), its number, uint8 [B, H, W, 3] pixels, labels. */
  push(phase: number, index: number, images: Uint8Array, shape: number[], labels: Int32Array): void;
  /** The waiting epoch or evaluation fails with `message`. */
  fail(message: string): void;
  pending(): number;
  /** Pops and normalises `batches` batches of `phase` on a worker thread, as an epoch does before its model step (bench:folder). */
  drain(phase: number, batches: number, preprocessing?: NativePreprocessing): Promise<{ images: number; seconds: number }>;
  dispose(): void;
}

export interface NativeTrainerHandle {
  trainEpoch(onProgress?: (p: NativeTrainProgress) => void): Promise<NativeEpochResult>;
  stop(): void;
  evaluate(dataset: NativeDatasetHandle | NativeBatchFeedHandle, batchSize: number, numClasses: number): Promise<NativeEvalResult>;
  batchesPerEpoch(): number;
  /** This rank's training images of an epoch, in training order. */
  epochIndices(epoch: number): Int32Array;
  getState(share?: boolean): NativeTrainState;  // tensors copied; with `share`, views (until the next epoch)
  /** getState() without copying the optimizer's tensors. */
  getCounters(): Omit<NativeTrainState, 'optimizer'>;
  setState(state: Omit<NativeTrainState, 'optimizer'> & { optimizer: NativeTensorInput[] }): void;
  /** Drops the optimizer state and the references to the model and the training images. */
  dispose(): void;
}

export interface NativeInfo {
  torchVersion: string;
  torchVersionMajor: number;
  torchVersionMinor: number;
  cudaAvailable: boolean;
  cudnnAvailable: boolean;
  cudaDeviceCount: number;
  /** Compiled against a CUDA libtorch with the CUDA-only code (GPU memory statistics, fused Adam). */
  builtWithCuda: boolean;
  /** As libtorch encodes them: CUDA 12040 = 12.4; cuDNN 90100 = 9.1.0. Present when CUDA is. */
  cudaRuntimeVersion?: number;
  cudnnVersion?: number;
  /** GPU 0, when CUDA is available and the addon was built with CUDA. */
  gpu?: { name: string; totalMemory: number; computeCapability: string };
  threads: number;
  hardwareThreads: number;
  parallelInfo: string;
  liveNativeObjects: LiveNativeObjects;
  /** The c10d backends this build can create ('gloo', 'nccl'); empty when built without c10d. */
  distributedBackends: string[];
  /** Why this build has no c10d, when it has none. */
  distributedMissing?: string;
  /** The oneDNN version eval passes call directly for their convolutions; '' when built without it. */
  onednnVersion: string;
  /** Whether they do now (setOnednnInference). */
  onednnInference: boolean;
  /** Whether CPU eval passes split by batch over single-threaded helpers (setSplitInference); how many have so far. */
  splitInference: boolean;
  splitPasses: number;
  /** Whether CPU training passes run 1x1 convolutions as oneDNN matrix products (setPointwiseMatmul); how many have so far. */
  pointwiseMatmul: boolean;
  pointwiseMatmulCalls: number;
  /** glibc malloc's thresholds and top pad as the addon left them (native/malloc_tuning.h), in bytes. */
  malloc: { mode: MallocMode; mmapThreshold?: number; trimThreshold?: number; topPad?: number };
}

/** 'tuned': the addon fixed glibc's thresholds; 'environment': the user's MALLOC_*_ or GLIBC_TUNABLES kept;
 * 'default': XCEPTION_TORCH_MALLOC=default; 'unavailable': not glibc. */
export type MallocMode = 'tuned' | 'environment' | 'default' | 'unavailable';

/** A joined c10d process group (createProcessGroup); a NativeTrainer takes it as `group`. */
export interface NativeProcessGroupHandle {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: string;
  /** Element-wise reduction of small values across ranks. */
  allReduce(values: Float64Array, op?: 'sum' | 'max' | 'min'): Promise<Float64Array>;
  barrier(): Promise<void>;
  /** Leaves the group once no trainer holds it. */
  dispose(): void;
}

export interface NativeProcessGroupConfig {
  backend: string; rank: number; worldSize: number; masterAddr: string; masterPort: number;
  isStoreServer: boolean; storePrefix: string; timeoutSeconds: number;
}

/** The heavy native objects alive now: what dispose() and garbage collection have not yet freed. */
export interface LiveNativeObjects {
  networks: number;
  datasets: number;
  trainingSessions: number;
  processGroups: number;
}

export interface NativeAddon extends NativeTestHooks {
  NativeModel: new (name: string, options: object) => NativeModelHandle;
  NativeDataset: new (images: Uint8Array, labels: Uint8Array, shape: number[], device: string) => NativeDatasetHandle;
  /**
   * PIL's resize of the `from` box of an RGB image to resizedWidth x resizedHeight, of which `window`
   * (mirrored when `flip`) is written into `out` at byte `offset`, on a libuv worker (native/pil_resample.h).
   */
  resampleRgb(
    src: Uint8Array, width: number, height: number, from: PixelBox, resizedWidth: number, resizedHeight: number,
    window: PixelBox, filter: 'bilinear' | 'bicubic', flip: boolean, out: Uint8Array, offset: number,
  ): Promise<void>;
  /** Whether eval passes run their convolutions on oneDNN directly (the default where built with it) or through libtorch. */
  setOnednnInference(enabled: boolean): void;
  /** Whether eval passes on the CPU split by batch over single-threaded helpers (the default) or run whole. */
  setSplitInference(enabled: boolean): void;
  /** Whether CPU training passes run 1x1 convolutions as oneDNN matrix products (the default where built with oneDNN). */
  setPointwiseMatmul(enabled: boolean): void;
  /** Whether the addon decodes JPEGs itself (built with the system's libjpeg). */
  jpegDecoder: boolean;
  /** A JPEG's RGB bytes as PIL's loader gets them, decoded on a libuv worker; null for a CMYK/YCCK file. */
  decodeJpeg(bytes: Uint8Array, maxPixels: number): Promise<{ width: number; height: number; data: Uint8Array } | null>;
  /** decodeJpeg of a file, read on the worker too; null also when it is not a JPEG. */
  decodeJpegFile(path: string, maxPixels: number): Promise<{ width: number; height: number; data: Uint8Array } | null>;
  /** onPop is called (on the event loop) after each batch the native side takes, with the number still queued. */
  NativeBatchFeed: new (size: number, onPop?: (pending: number) => void) => NativeBatchFeedHandle;
  NativeTrainer: new (model: NativeModelHandle, train: NativeDatasetHandle | NativeBatchFeedHandle, config: object) => NativeTrainerHandle;
  /** Timed training steps (the training loop's step) or eval forward passes on a fixed random batch (bench/). */
  benchmarkSteps(model: NativeModelHandle, args: {
    batch: number; size: number; warmup: number; steps: number; train: boolean;
    amp?: 'off' | 'fp16' | 'bf16'; channelsLast?: boolean;
  }): Promise<{ seconds: number; images: number; peakMemory?: number }>;
  /** Joins a c10d process group; resolves once every rank has joined. */
  createProcessGroup(config: NativeProcessGroupConfig): Promise<NativeProcessGroupHandle>;
  /** torch.utils.data.DistributedSampler's split of a permutation: this rank's indices. */
  shardIndices(order: Int32Array, rank: number, worldSize: number): Int32Array;
  info(): NativeInfo;
  setNumThreads(threads: number): void;
  /** Seeds libtorch's default generators (weight initialisation). */
  manualSeed(seed: number): void;
  /** The CUDA caching allocator's statistics in bytes; null without CUDA. */
  cudaMemoryStats(device?: number): { allocated: number; peakAllocated: number; reserved: number; peakReserved: number } | null;
  resetCudaPeakMemory(device?: number): void;
  /** TF32 tensor cores for float32 convolutions and matrix products (PyTorch's default: on for cuDNN). */
  setAllowTF32(allow: boolean): void;
}

/** Where a libtorch was found (scripts/download-libtorch.ts) and how. */
export interface LibtorchLocation {
  source: 'env' | 'python' | 'system' | 'cache' | 'download' | 'apt';
  /** Folder for CMAKE_PREFIX_PATH: a libtorch root, or for python/system the cmake folder holding Torch/. */
  prefixPath: string;
  /** The libtorch (or torch package) root, where known. */
  root?: string;
  version?: string;
  cuda?: boolean;
  /** The C++ ABI its TorchConfig.cmake declares (_GLIBCXX_USE_CXX11_ABI); the build takes the flag
   * from TORCH_CXX_FLAGS either way, this only reports it. */
  cxx11Abi?: boolean;
}

/** What scripts/build-native.ts records in build/libtorch.json about the libtorch the addon was built against. */
export interface BuildInfo extends LibtorchLocation {
  builtAt: string;
  /** The CUDA toolkit the configure step was given (CUDA libtorch only). */
  cudaToolkit?: { root: string; version?: string };
}

export function readBuildInfo(buildInfoPath = BUILD_INFO_PATH): BuildInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(buildInfoPath, 'utf8')) as BuildInfo;
  } catch {
    return undefined;
  }
}

export const REBUILD_COMMAND = `cd ${JSON.stringify(PROJECT_ROOT)} && npm run build:native`;

/**
 * Loads the addon at `addonPath`, turning the loader's failures into errors that say what is
 * wrong and the one command that fixes it.
 */
export function loadAddonFrom(addonPath: string, buildInfoPath = BUILD_INFO_PATH): NativeAddon {
  if (!fs.existsSync(addonPath)) {
    throw new Error(
      `The xception-torch native addon is not built (no ${addonPath}). Build it with:\n  ${REBUILD_COMMAND}`,
    );
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(addonPath) as NativeAddon;
  } catch (cause) {
    const reason = (cause as Error).message;
    const built = readBuildInfo(buildInfoPath);
    const builtWith = built
      ? `libtorch ${built.version ?? '(unknown version)'} at ${built.prefixPath}`
      : 'a libtorch that is not recorded';
    let what: string;
    if (/cannot open shared object file|Library not loaded|image not found/i.test(reason)) {
      what = `It was built against ${builtWith}, which can no longer be loaded.`;
    } else if (/undefined symbol|symbol lookup error|version `.*' not found/i.test(reason)) {
      what = `It was built against ${builtWith}, but a different libtorch is being loaded now.`;
    } else {
      what = `It could not be loaded (built against ${builtWith}).`;
    }
    throw new Error(`${what}\nLoader said: ${reason.split('\n')[0]}\nRebuild the addon with:\n  ${REBUILD_COMMAND}`);
  }
}

let cached: NativeAddon | undefined;

/** Read by the addon when it loads (native/malloc_tuning.h). */
export const MALLOC_VARIABLE = 'XCEPTION_TORCH_MALLOC';

/** Refuses a value of XCEPTION_TORCH_MALLOC the addon would not understand (it would otherwise be ignored). */
export function checkMallocChoice(env: NodeJS.ProcessEnv = process.env): void {
  const value = env[MALLOC_VARIABLE];
  if (value === undefined || value === '' || value === 'tuned' || value === 'default') return;
  throw new RangeError(`${MALLOC_VARIABLE} must be "tuned" (the default: fixed thresholds, memory reused between passes) ` +
    `or "default" (glibc's own thresholds), not ${JSON.stringify(value)}`);
}

/** The addon, loaded once on first use. */
export function native(): NativeAddon {
  if (!cached) checkMallocChoice();
  cached ??= loadAddonFrom(ADDON_PATH);
  return cached;
}
