// Reads TensorBoard event files with the independent reader test/oracle/tfevents.py (its own
// CRC-32C and protobuf parser, nothing shared with lib/report/tensorboard.ts).
import { spawnSync } from 'child_process';
import * as path from 'path';
import { PYTHON } from './python';

export const READER = path.join(__dirname, '..', 'oracle', 'tfevents.py');

export type JsonFloat = number | 'NaN' | 'Infinity' | '-Infinity';
export interface Event {
  wall_time?: JsonFloat;
  step?: number;
  file_version?: string;
  summary?: { value: { tag: string; simple_value: JsonFloat }[] };
}
export interface EventFile { records: Event[]; tail_bytes: number }

export function runReader(files: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(PYTHON, [READER, ...files], { encoding: 'utf8' });
  if (r.error) throw new Error(`tfevents.py needs ${PYTHON} (any Python 3, standard library only): ${r.error.message}`);
  return r;
}

export function readEvents(...files: string[]): EventFile[] {
  const r = runReader(files);
  if (r.status !== 0) throw new Error(`tfevents.py failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as EventFile[];
}

/** Every (tag, step, value) of the scalar records of `files`, in order. */
export function scalars(...files: string[]): Array<{ tag: string; step: number; value: JsonFloat }> {
  return readEvents(...files).flatMap((f) => f.records.flatMap((e) =>
    (e.summary?.value ?? []).map((v) => ({ tag: v.tag, step: e.step ?? 0, value: v.simple_value }))));
}
