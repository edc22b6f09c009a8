// What the native runtime sees: libtorch version and location, CUDA and cuDNN, CPU threads.
import * as fs from 'fs';
import { BuildInfo, LiveNativeObjects, MallocMode, native, readBuildInfo } from './native';

export interface RuntimeInfo {
  /** The libtorch version the addon was compiled against (TORCH_VERSION). */
  libtorchVersion: string;
  /** Where that libtorch was found at build time, and how (env, python, system, cache, download, apt). */
  libtorch?: BuildInfo;
  cudaAvailable: boolean;
  cudnnAvailable: boolean;
  cudaDeviceCount: number;
  /** Whether the addon was compiled against a CUDA libtorch (with the CUDA-only code). */
  builtWithCuda: boolean;
  /** 'major.minor' of the CUDA runtime, and cuDNN's 'major.minor.patch', when CUDA is available. */
  cudaVersion?: string;
  cudnnVersion?: string;
  gpu?: { name: string; totalMemoryGiB: number; computeCapability: string };
  /** Intra-op threads used for CPU work (default: every available core). */
  threads: number;
  hardwareThreads: number;
  /** The CUDA libraries this process has loaded, by path (Linux; empty without CUDA). Shows whether
   * the CUDA runtime came from the PyTorch install or from a system toolkit. */
  loadedCudaLibraries: string[];
  /** Models' networks, datasets and training sessions alive now (see dispose()). */
  liveNativeObjects: LiveNativeObjects;
  /** The c10d backends this build can train data-parallel with ('gloo', 'nccl'); empty: none. */
  distributedBackends: string[];
  /** Why this build has no c10d backend, when it has none. */
  distributedMissing?: string;
  /** Who decodes JPEGs: the addon with the system's libjpeg, or sharp (an addon built without libjpeg-dev). */
  jpegDecoder: 'libjpeg' | 'sharp';
  /** Who runs eval passes' convolutions on the CPU: oneDNN called directly (weights reordered once, ReLU
   * fused), or libtorch (an addon built without libdnnl-dev, or setInferenceConvolutions('libtorch')). */
  inferenceConvolutions: 'onednn' | 'libtorch';
  /** How eval passes on the CPU use the intra-op threads: 'split' (the default) runs one single-threaded pass per
   * thread over its share of the batch when the batch has at least as many images as threads; 'whole' shares every
   * layer out over the threads (setInferencePasses('whole'), and always for smaller batches). */
  inferencePasses: 'split' | 'whole';
  /** Who runs the 1x1 convolutions of training passes on the CPU: oneDNN matrix products that read the weights where
   * they are (the default where built with oneDNN), or libtorch's convolutions (setTrainingConvolutions('libtorch')). */
  trainingConvolutions: 'onednn' | 'libtorch';
  /** The oneDNN version the addon was built with; '' without. */
  onednnVersion: string;
  /** The BLAS library libtorch loaded (from /proc/self/maps), e.g. 'openblas-openmp' or 'reference'; undefined when unknown. */
  blas?: string;
  /** glibc malloc's thresholds and top pad, in bytes: fixed by the addon ('tuned') so that tensors' memory is reused
   * between passes instead of going back to the OS and faulting in again; see docs/benchmarks.md. */
  malloc: { mode: MallocMode; mmapThresholdBytes?: number; trimThresholdBytes?: number; topPadBytes?: number };
}

export function runtimeInfo(): RuntimeInfo {
  const info = native().info();
  const maps = processMaps();
  return {
    libtorchVersion: info.torchVersion,
    libtorch: readBuildInfo(),
    cudaAvailable: info.cudaAvailable,
    cudnnAvailable: info.cudnnAvailable,
    cudaDeviceCount: info.cudaDeviceCount,
    builtWithCuda: info.builtWithCuda,
    cudaVersion: info.cudaRuntimeVersion === undefined ? undefined : decodeCudaVersion(info.cudaRuntimeVersion),
    cudnnVersion: info.cudnnVersion === undefined ? undefined : decodeCudnnVersion(info.cudnnVersion),
    gpu: info.gpu && { name: info.gpu.name, totalMemoryGiB: info.gpu.totalMemory / 2 ** 30, computeCapability: info.gpu.computeCapability },
    threads: info.threads,
    hardwareThreads: info.hardwareThreads,
    loadedCudaLibraries: loadedCudaLibraries(maps),
    liveNativeObjects: info.liveNativeObjects,
    distributedBackends: info.distributedBackends,
    distributedMissing: info.distributedMissing,
    jpegDecoder: native().jpegDecoder ? 'libjpeg' : 'sharp',
    inferenceConvolutions: info.onednnInference ? 'onednn' : 'libtorch',
    inferencePasses: info.splitInference ? 'split' : 'whole',
    trainingConvolutions: info.pointwiseMatmul ? 'onednn' : 'libtorch',
    onednnVersion: info.onednnVersion,
    blas: loadedBlas(maps),
    malloc: {
      mode: info.malloc.mode,
      mmapThresholdBytes: info.malloc.mmapThreshold,
      trimThresholdBytes: info.malloc.trimThreshold,
      topPadBytes: info.malloc.topPad,
    },
  };
}

/**
 * Which BLAS this process loaded, by the path of its libblas: Debian's libtorch links libblas.so.3, which the
 * alternatives system points at the reference implementation unless OpenBLAS is installed. libtorch 1.13
 * computes single-threaded 1x1 convolutions of fewer than 16 images through BLAS, 14 times slower on the
 * reference one (an Xception training step at 1 thread: 0.8 against 11.8 img/s).
 */
export function loadedBlas(maps: string | undefined = processMaps()): string | undefined {
  if (maps === undefined) return undefined;
  const files = maps.split('\n').map((line) => line.slice(line.indexOf('/'))).filter((f) => f.startsWith('/'));
  const openblas = files.find((f) => /\/(libopenblas[^/]*\.so|openblas[^/]*\/libblas\.so)/.test(f));
  if (openblas) {
    const variant = /\/openblas-([a-z]+)\//.exec(openblas)?.[1];
    return variant ? `openblas-${variant}` : 'openblas';
  }
  if (files.some((f) => /\/blas\/libblas\.so/.test(f))) return 'reference';
  if (files.some((f) => /libmkl_/.test(f))) return 'mkl';
  return undefined;
}

/**
 * Who runs the convolutions (and the max and average poolings) of eval-mode passes on the CPU (process-wide, from the next one):
 * 'onednn' (the default where the addon was built with libdnnl-dev) calls oneDNN directly with weights
 * reordered once and ReLU fused; 'libtorch' goes through at::conv2d, as before, for comparisons.
 * Both run the same oneDNN kernels. Asking for 'onednn' in a build without it throws.
 */
export function setInferenceConvolutions(engine: 'onednn' | 'libtorch'): void {
  native().setOnednnInference(onednnChosen('inference convolutions', engine));
}

/** Whether `engine` is 'onednn' (true) or 'libtorch' (false); throws for anything else, and for 'onednn' in a build without it. */
function onednnChosen(what: string, engine: string): boolean {
  if (engine !== 'onednn' && engine !== 'libtorch') {
    throw new TypeError(`${what}: expected 'onednn' or 'libtorch', got ${JSON.stringify(engine)}`);
  }
  if (engine === 'onednn' && !native().info().onednnVersion) {
    throw new Error('this addon was built without oneDNN (Debian/Ubuntu: apt-get install libdnnl-dev, then npm run build:native)');
  }
  return engine === 'onednn';
}

/**
 * Who runs the 1x1 (stride 1, unpadded, ungrouped, biasless) convolutions of training passes on the CPU, in float32
 * over channels-last inputs (process-wide, from the next one): 'onednn' (the default where the addon was built with
 * libdnnl-dev) as oneDNN matrix products, forward, backward-data and backward-weights, which read the weights where
 * they are; 'libtorch' through libtorch's convolution, which reorders them into oneDNN's blocked layout on every call
 * and the weight gradient back out (docs/training.md). Same arithmetic up to float rounding. Asking for 'onednn' in a
 * build without it throws.
 */
export function setTrainingConvolutions(engine: 'onednn' | 'libtorch'): void {
  native().setPointwiseMatmul(onednnChosen('training convolutions', engine));
}

/**
 * How eval passes on the CPU use the intra-op threads (process-wide, from the next pass): 'split' (the default) runs,
 * for a batch of at least as many images as threads, one single-threaded pass per thread over its share of the
 * batch, side by side; 'whole' runs one pass with every layer shared out over the threads, as before, for
 * comparisons. The logits agree to float rounding: in eval mode the images of a batch do not interact.
 */
export function setInferencePasses(mode: 'split' | 'whole'): void {
  if (mode !== 'split' && mode !== 'whole') {
    throw new TypeError(`inference passes: expected 'split' or 'whole', got ${JSON.stringify(mode)}`);
  }
  native().setSplitInference(mode === 'split');
}

const CUDA_LIBRARY = /\/lib(cudart|cublas|cublasLt|cudnn[a-z_]*|nvrtc|nvrtc-builtins|nccl|cufft|curand|cusparse|cusolver|nvToolsExt|nvJitLink|cupti|torch_cuda|c10_cuda)(-[0-9a-f]{8})?\.so[.0-9]*$/;

/** This process's memory maps (Linux's /proc/self/maps); undefined elsewhere. */
function processMaps(): string | undefined {
  try {
    return fs.readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return undefined;
  }
}

/** Paths of the CUDA libraries mapped into this process (from /proc/self/maps), sorted. */
export function loadedCudaLibraries(maps: string | undefined = processMaps()): string[] {
  if (maps === undefined) return [];
  const found = new Set<string>();
  for (const line of maps.split('\n')) {
    const file = line.slice(line.indexOf('/'));
    if (line.includes('/') && CUDA_LIBRARY.test(file)) found.add(file);
  }
  return [...found].sort();
}

/** A device as libtorch names it: 'auto' is CUDA where libtorch sees a GPU, else the CPU. */
export function resolveDevice(device: string, cudaAvailable?: boolean): string {
  if (device !== 'auto') return device;
  return (cudaAvailable ?? native().info().cudaAvailable) ? 'cuda' : 'cpu';
}

/** The index of a CUDA device as libtorch names it: 'cuda' -> 0, 'cuda:1' -> 1. */
export const cudaIndex = (device: string): number => (device.includes(':') ? Number(device.split(':')[1]) : 0);

/** Sets the CPU thread count libtorch uses for the work this package starts. */
export function setNumThreads(threads: number): void {
  if (!Number.isSafeInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer; got ${threads}`);
  native().setNumThreads(threads);
}

/** CUDA's integer version (12040) as '12.4'. */
export function decodeCudaVersion(v: number): string {
  return `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** cuDNN's integer version as 'major.minor.patch' (8.x encodes major*1000, 9.x major*10000). */
export function decodeCudnnVersion(v: number): string {
  const base = v >= 90000 ? 10000 : 1000;
  const rest = v % base;
  return `${Math.floor(v / base)}.${Math.floor(rest / 100)}.${rest % 100}`;
}
