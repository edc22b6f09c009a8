// Runs one benchmark measurement in a process of its own and reads the JSON line it prints last.
import { spawnSync } from 'child_process';
import { waitForIdle } from './interference';

export interface Measurement {
  imagesPerSecond: number;
  seconds: number;
  peakRssMb?: number;
  /** Peak bytes allocated on the GPU (CUDA caching allocator). */
  peakMemory?: number;
  /** Share of the CPUs (0..1) other processes took during the timed steps (bench/interference.ts). */
  othersShare?: number | null;
}

/** How much interference from other processes a guarded measurement tolerates. */
export interface InterferenceGuard {
  /** Largest share of the CPUs (0..1) other processes may take during the timed steps. */
  maxShare: number;
  /** Reruns of a disturbed measurement at most; the last one is kept whatever its share. */
  retries: number;
}

export function measure(command: string, args: string[], label: string, env?: NodeJS.ProcessEnv): Measurement {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${label} failed (exit ${r.status ?? r.signal}):\n${r.stderr}`);
  if (r.stderr.trim()) process.stderr.write(r.stderr.split('\n').map((l) => (l ? `  ${label}: ${l}` : l)).join('\n'));
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Measurement;
}

/**
 * measure(), started once the machine is idle and run again while the measured process reports
 * that other processes took more than `guard.maxShare` of the CPUs during its timed steps.
 */
export async function measureGuarded(command: string, args: string[], label: string, guard: InterferenceGuard, env?: NodeJS.ProcessEnv): Promise<Measurement> {
  for (let attempt = 0; ; attempt++) {
    await waitForIdle(guard.maxShare);
    const m = measure(command, args, label, env);
    if (m.othersShare === undefined || m.othersShare === null || m.othersShare <= guard.maxShare || attempt >= guard.retries) return m;
    console.error(`${label}: other processes took ${(100 * m.othersShare).toFixed(0)}% of the CPUs meanwhile; measuring again`);
  }
}
