// What the commands read back from a run folder: its checkpoints, the options the run was made
// with (the checkpoint's state), and command.json, the CLI's record of how it started the run.
import type { PresetName } from '../images/presets';
import * as fs from 'fs';
import * as path from 'path';
import { findCheckpoint, readCheckpointState } from '../checkpoint';
import { describeTakeOver, withRunLock } from '../run-lock';
import type { SyntheticDatasetOptions } from '../datasets';
import type { RunMeta } from '../run-files';
import { ownsRunFolder } from '../distributed/settings';

export const COMMAND_FILE = 'command.json';

/** command.json: the CLI's arguments and the options it gave the Trainer. */
export interface CommandRecord {
  version: string;
  argv: string[];
  /** Options the Trainer does not record in its checkpoints. */
  dataDir?: string;
  synthetic?: SyntheticDatasetOptions;
  /** --preset: a published weight set's preprocessing (its mean/std are in the Trainer's options too). */
  preset?: PresetName;
}

/** The checkpoint meta the Trainer writes. */
export type SavedMeta = RunMeta;

export interface SavedRun {
  /** The checkpoint folder (holding model.safetensors and state.safetensors). */
  checkpoint: string;
  /** The run folder: the folder above checkpoints/, or the checkpoint folder if it is elsewhere. */
  runDir: string;
  meta: SavedMeta;
  /** Epochs the checkpoint has completed. */
  epoch: number;
  command?: CommandRecord;
}

const isCheckpointFolder = (folder: string): boolean => findCheckpoint(path.dirname(folder), path.basename(folder)) === folder;

/**
 * The checkpoint a path names: a checkpoint folder (…/checkpoints/best), a file in one, or a run
 * folder (then checkpoints/best, else checkpoints/last). Throws when there is none.
 */
export function locateCheckpoint(target: string): string {
  const resolved = path.resolve(target);
  if (!fs.existsSync(resolved)) throw new Error(`no checkpoint at ${target}: it does not exist`);
  const folder = fs.statSync(resolved).isDirectory() ? resolved : path.dirname(resolved);
  if (isCheckpointFolder(folder)) return folder;
  const checkpoints = path.join(folder, 'checkpoints');
  const found = findCheckpoint(checkpoints, 'best') ?? findCheckpoint(checkpoints, 'last');
  if (found) return found;
  throw new Error(`no checkpoint at ${target}: expected a checkpoint folder (holding model.safetensors and state.safetensors) or a run folder with checkpoints/best or checkpoints/last`);
}

/** The run folder of a checkpoint folder. */
export function runFolderOf(checkpoint: string): string {
  const parent = path.dirname(checkpoint);
  return path.basename(parent) === 'checkpoints' ? path.dirname(parent) : checkpoint;
}

export function readCommandRecord(runDir: string): CommandRecord | undefined {
  const file = path.join(runDir, COMMAND_FILE);
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as CommandRecord;
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
}

export async function readSavedRun(checkpoint: string): Promise<SavedRun> {
  const state = await readCheckpointState<SavedMeta>(checkpoint);
  const meta = state.meta;
  if (!meta || typeof meta.model !== 'string' || typeof meta.options !== 'object' || meta.options === null) {
    throw new Error(`${checkpoint} was not written by the Trainer (its state has no model and options)`);
  }
  const runDir = runFolderOf(checkpoint);
  return { checkpoint, runDir, meta, epoch: state.train.position.epoch, command: readCommandRecord(runDir) };
}

/**
 * Runs `work` holding the lock of run folder `dir` (lib/run-lock.ts): another run into it fails
 * with an error naming its process; the lock of a run that was killed is taken over with a warning.
 * A data-parallel worker other than rank 0 runs `work` without it: rank 0 holds it for the group.
 */
export function lockRunFolder<T>(dir: string, work: () => Promise<T>): Promise<T> {
  if (!ownsRunFolder()) return work();
  return withRunLock(dir, work, { onTakeOver: (owner, file) => console.error(`xception-torch: warning: ${describeTakeOver(owner, file)}`) });
}
