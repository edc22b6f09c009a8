// Peak memory of one stretch of work, for `xception-torch compare`. On the CPU: the process's
// peak resident set, reset first where Linux allows it (/proc/self/clear_refs), so that each run
// gets its own peak inside one process. On CUDA: the caching allocator's peak of tensor memory
// (torch.cuda.max_memory_allocated), reset at the start.
import * as fs from 'fs';
import { native } from './native';
import { cudaIndex } from './runtime';

export interface PeakMemory {
  bytes: number;
  /** What was measured. */
  source: 'process resident set' | 'CUDA allocator';
  /** True when the peak could not be reset, so it covers the whole process so far. */
  sinceProcessStart: boolean;
}

export interface PeakMemoryProbe {
  /** The peak since the probe started; null where the device gives no figure (a CPU build of the addon on CUDA). */
  read(): PeakMemory | null;
}

/** Writing 5 to clear_refs resets the peak RSS (VmHWM, and getrusage's maxrss) to the current RSS. */
function resetProcessPeak(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** A CUDA allocator peak from the addon (e.g. benchmarkSteps'), as a PeakMemory; null when there is none. */
export function cudaPeak(bytes: number | undefined | null): PeakMemory | null {
  return typeof bytes === 'number' ? { bytes, source: 'CUDA allocator', sinceProcessStart: false } : null;
}

/** Starts measuring the peak memory of the work about to run on `device` ('cpu', 'cuda', 'cuda:N'). */
export function startPeakMemory(device: string): PeakMemoryProbe {
  if (device.startsWith('cuda')) {
    const index = cudaIndex(device);
    native().resetCudaPeakMemory(index);
    return { read: () => cudaPeak(native().cudaMemoryStats(index)?.peakAllocated) };
  }
  const reset = resetProcessPeak();
  return {
    read: () => ({ bytes: process.resourceUsage().maxRSS * 1024, source: 'process resident set', sinceProcessStart: !reset }),
  };
}
