// Runs one benchmark measurement in a process of its own and reads the JSON line it prints last.
import { spawnSync } from 'child_process';

export interface Measurement {
  imagesPerSecond: number;
  seconds: number;
  peakRssMb?: number;
  /** Peak bytes allocated on the GPU (CUDA caching allocator). */
  peakMemory?: number;
}

export function measure(command: string, args: string[], label: string, env?: NodeJS.ProcessEnv): Measurement {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024, env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${label} failed (exit ${r.status ?? r.signal}):\n${r.stderr}`);
  if (r.stderr.trim()) process.stderr.write(r.stderr.split('\n').map((l) => (l ? `  ${label}: ${l}` : l)).join('\n'));
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as Measurement;
}
