// How much of the CPUs other processes took while a benchmark measured, from /proc/stat (Linux):
// the machine's busy time over the interval less the measuring process's own CPU time. On a shared
// machine a disturbed measurement can be several times too slow (seen here: 0.7 img/s for a step
// that runs at 8 img/s on an idle machine), so the model benchmark repeats those instead of
// reporting them. bench/model_reference.py computes the same on the PyTorch side.
import * as fs from 'fs';
import * as os from 'os';

export interface CpuSnapshot {
  busySeconds: number;  // busy time of all CPUs together
  at: number;           // wall clock, seconds
}

const TICKS_PER_SECOND = 100;  // USER_HZ, fixed at 100 on Linux

/** Busy time of the whole machine now, or undefined where /proc/stat is not available. */
export function cpuSnapshot(): CpuSnapshot | undefined {
  let line: string;
  try {
    line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  } catch {
    return undefined;
  }
  // cpu user nice system idle iowait irq softirq steal ...
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = fields[3] + fields[4];
  return { busySeconds: (total - idle) / TICKS_PER_SECOND, at: Date.now() / 1000 };
}

/**
 * The share of all CPUs (0..1) that processes other than the measured one used between two
 * snapshots, given the CPU seconds the measured process used between them.
 */
export function othersShare(before: CpuSnapshot, after: CpuSnapshot, ownCpuSeconds: number): number {
  const capacity = (after.at - before.at) * os.cpus().length;
  if (capacity <= 0) return 0;
  return Math.max(0, after.busySeconds - before.busySeconds - ownCpuSeconds) / capacity;
}

/** This process's CPU time, all threads, in seconds. */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Waits (up to `timeoutMs`) until the machine's CPUs are busy less than `share` over a second. */
export async function waitForIdle(share: number, timeoutMs = 15 * 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const before = cpuSnapshot();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = cpuSnapshot();
    if (!before || !after || othersShare(before, after, 0) < share || Date.now() > deadline) return;
  }
}
