// What the native runtime sees: libtorch version and location, CUDA and cuDNN, CPU threads.
import { BuildInfo, native, readBuildInfo } from './native';

export interface RuntimeInfo {
  /** The libtorch version the addon was compiled against (TORCH_VERSION). */
  libtorchVersion: string;
  /** Where that libtorch was found at build time, and how (env, python, system, cache, download, apt). */
  libtorch?: BuildInfo;
  cudaAvailable: boolean;
  cudnnAvailable: boolean;
  cudaDeviceCount: number;
  /** Intra-op threads used for CPU work (default: every available core). */
  threads: number;
  hardwareThreads: number;
}

export function runtimeInfo(): RuntimeInfo {
  const info = native().info();
  return {
    libtorchVersion: info.torchVersion,
    libtorch: readBuildInfo(),
    cudaAvailable: info.cudaAvailable,
    cudnnAvailable: info.cudnnAvailable,
    cudaDeviceCount: info.cudaDeviceCount,
    threads: info.threads,
    hardwareThreads: info.hardwareThreads,
  };
}

/** Sets the CPU thread count libtorch uses for the work this package starts. */
export function setNumThreads(threads: number): void {
  if (!Number.isSafeInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer; got ${threads}`);
  native().setNumThreads(threads);
}
