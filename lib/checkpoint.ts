// Run-folder checkpoints. A checkpoint is a folder of two files:
//   model.safetensors  the weights with PyTorch's names (loads with load_state_dict as it is)
//   state.safetensors  the optimizer tensors, and in its metadata the JSON state: where the
//                      training stands, the scaler, the options and the history so far
//
// A checkpoint `name` is only ever written whole: to a temporary folder `.<name>.tmp-<pid>-<hex>`,
// flushed to the disk, then swapped in with renames. At every instant one of `<name>` and
// `.<name>.old` is a whole checkpoint, whatever step a kill or a power loss interrupts:
//   1. write the temporary folder and flush it       (<name> or .old, as before, untouched)
//   2. if <name> exists: delete .old, rename <name> to .old   (if <name> is missing, a swap was cut
//      between its renames and .old is the only whole copy: it stays)
//   3. rename the temporary folder to <name>, flush the parent folder
//   4. delete .old
// findCheckpoint() prefers <name> and falls back to .old. Temporary folders of killed writers are
// removed by removeStaleTemporaries() (lib/atomic-write.ts), and an .old that a whole <name> superseded by
// removeSupersededCheckpoints(), when the next run starts.
import * as fs from 'fs';
import * as path from 'path';
import { fsyncFile, fsyncFolder, temporaryName } from './atomic-write';
import { checkSavedState, CheckpointError, SavedTrainState } from './checkpoint-state';
import { isNativeDtype, tensorEntries } from './native';
import type { NativeTensorInput, NativeTrainState } from './native';
import { readSafetensors, writeSafetensors } from './safetensors';

export { CheckpointError } from './checkpoint-state';

export const MODEL_FILE = 'model.safetensors';
export const STATE_FILE = 'state.safetensors';

export interface CheckpointState<Meta> {
  train: SavedTrainState;
  optimizer: NativeTensorInput[];
  meta: Meta;
}

/** The steps of a checkpoint swap, in order (for tests that stop a write at each one). */
export type CheckpointStep = 'written' | 'old-removed' | 'moved-to-old' | 'swapped' | 'done';

/**
 * Writes checkpoint `name` (e.g. 'last', 'best') under `dir`: `saveModel` writes the weights
 * file it is given, the rest goes into the state file. `afterStep` is for tests: it runs after
 * each step of the swap, and throwing there leaves the folder as a kill at that point would.
 */
export async function writeCheckpoint<Meta>(
  dir: string, name: string, saveModel: (file: string) => Promise<void>, train: NativeTrainState, meta: Meta,
  afterStep: (step: CheckpointStep) => void | Promise<void> = () => undefined,
): Promise<string> {
  return swapIn(dir, name, async (temp) => {
    await saveModel(path.join(temp, MODEL_FILE));
    const { optimizer, ...rest } = train;
    await writeSafetensors(path.join(temp, STATE_FILE), tensorEntries(optimizer), {
      format: 'xception-torch-checkpoint',
      state: JSON.stringify({ train: rest, meta }),
    });
    // Both files are flushed by writeSafetensors; the model file again in case saveModel wrote it otherwise.
    await fsyncFile(path.join(temp, MODEL_FILE));
  }, afterStep);
}

/**
 * Makes checkpoint `name` under `dir` a copy of the whole checkpoint folder `from` (e.g. 'last' of
 * the 'best' just written), swapped in the same way. Checkpoint files are never changed once
 * written, so the copy is a pair of hard links where the file system allows (no second write of
 * the weights and the optimizer state), and a byte copy elsewhere.
 */
export async function copyCheckpoint(dir: string, name: string, from: string): Promise<string> {
  return swapIn(dir, name, async (temp) => {
    for (const file of [MODEL_FILE, STATE_FILE]) {
      try {
        await fs.promises.link(path.join(from, file), path.join(temp, file));
      } catch {
        await fs.promises.copyFile(path.join(from, file), path.join(temp, file));
        await fsyncFile(path.join(temp, file));
      }
    }
  }, () => undefined);
}

/** Fills a fresh temporary folder with `fill`, flushes it, and swaps it in as `<dir>/<name>` (steps at the top of this file). */
async function swapIn(
  dir: string, name: string, fill: (temp: string) => Promise<void>, afterStep: (step: CheckpointStep) => void | Promise<void>,
): Promise<string> {
  const created = await fs.promises.mkdir(dir, { recursive: true });
  if (created) await fsyncFolder(path.dirname(created));
  const target = path.join(dir, name);
  const old = path.join(dir, `.${name}.old`);
  const temp = temporaryName(path.join(dir, `.${name}`));
  await fs.promises.mkdir(temp);
  try {
    await fill(temp);
  } catch (error) {
    await fs.promises.rm(temp, { recursive: true, force: true });
    throw error;
  }
  await fsyncFolder(temp);
  await afterStep('written');

  if (isWhole(target)) {
    await fs.promises.rm(old, { recursive: true, force: true });
    await afterStep('old-removed');
    await fs.promises.rename(target, old);
    await afterStep('moved-to-old');
  } else {
    // A half-finished swap (only .old is whole) or a target that is not a whole checkpoint: clear
    // the way for the rename without touching .old.
    await fs.promises.rm(target, { recursive: true, force: true });
  }
  await fs.promises.rename(temp, target);
  await fsyncFolder(dir);
  await afterStep('swapped');
  await fs.promises.rm(old, { recursive: true, force: true });
  await afterStep('done');
  return target;
}

/**
 * Removes each `.<name>.old` whose `<name>` is whole: a swap killed after its second rename left the
 * previous checkpoint behind, and no later save of that name may come (a run resumed only to write
 * its metrics). An `.old` without a whole `<name>` is the only copy and stays. Returns what it removed.
 */
export async function removeSupersededCheckpoints(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const superseded = names.filter((n) => /^\..+\.old$/.test(n) && isWhole(path.join(dir, n.slice(1, -'.old'.length))));
  for (const n of superseded) await fs.promises.rm(path.join(dir, n), { recursive: true, force: true });
  return superseded;
}

/** Whether `folder` holds both files of a checkpoint (folders are only renamed into place whole). */
function isWhole(folder: string): boolean {
  return fs.existsSync(path.join(folder, MODEL_FILE)) && fs.existsSync(path.join(folder, STATE_FILE));
}

/** The folder of checkpoint `name`, or its previous version if a swap was interrupted; undefined if none. */
export function findCheckpoint(dir: string, name: string): string | undefined {
  return [path.join(dir, name), path.join(dir, `.${name}.old`)].find(isWhole);
}

/** Reads a checkpoint's state, checking every field (lib/checkpoint-state.ts); throws CheckpointError naming the file and field. */
export async function readCheckpointState<Meta>(folder: string): Promise<CheckpointState<Meta>> {
  const stateFile = path.join(folder, STATE_FILE);
  const file = await readSafetensors(stateFile);
  if (file.metadata.format !== 'xception-torch-checkpoint' || !file.metadata.state) {
    throw new CheckpointError(stateFile, 'it is not an xception-torch checkpoint (it has no training state)');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(file.metadata.state);
  } catch (error) {
    throw new CheckpointError(stateFile, `its state is not valid JSON (${(error as Error).message.slice(0, 100)})`);
  }
  const { train, meta } = checkSavedState<Meta>(parsed, stateFile);
  // JSON holds a NaN loss sum (a run with a loss scaler skips such steps and goes on) as null.
  const position = { ...train.position, lossSum: train.position.lossSum ?? NaN, pendingLoss: train.position.pendingLoss ?? NaN };
  const optimizer: NativeTensorInput[] = [...file.tensors].map(([name, t]) => {
    const dtype = t.dtype;
    if (!isNativeDtype(dtype)) throw new CheckpointError(stateFile, `optimizer tensor '${name.slice(0, 80)}' has unsupported dtype ${dtype}`);
    return { name, dtype, shape: t.shape, data: t.data };
  });
  return { train: { ...train, position }, optimizer, meta };
}

export function modelFile(folder: string): string {
  return path.join(folder, MODEL_FILE);
}
