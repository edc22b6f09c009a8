// Run-folder checkpoints. A checkpoint is a folder of two files:
//   model.safetensors  the weights with PyTorch's names (loads with load_state_dict as it is)
//   state.safetensors  the optimizer tensors, and in its metadata the JSON state: where the
//                      training stands, the scaler, the options and the history so far
// It is written to a temporary folder and swapped in with renames, so a crash or kill never
// leaves a broken checkpoint: readers fall back to the previous one while a swap is half done.
import * as fs from 'fs';
import * as path from 'path';
import { isNativeDtype, tensorEntries } from './native';
import type { NativeTensorInput, NativeTrainState } from './native';
import { readSafetensors, writeSafetensors } from './safetensors';

export const MODEL_FILE = 'model.safetensors';
export const STATE_FILE = 'state.safetensors';

export interface CheckpointState<Meta> {
  train: Omit<NativeTrainState, 'optimizer'>;
  optimizer: NativeTensorInput[];
  meta: Meta;
}

/**
 * Writes checkpoint `name` (e.g. 'last', 'best') under `dir`: `saveModel` writes the weights
 * file it is given, the rest goes into the state file.
 */
export async function writeCheckpoint<Meta>(
  dir: string, name: string, saveModel: (file: string) => Promise<void>, train: NativeTrainState, meta: Meta,
): Promise<string> {
  await fs.promises.mkdir(dir, { recursive: true });
  const target = path.join(dir, name);
  const temp = path.join(dir, `.${name}.tmp-${process.pid}`);
  const old = path.join(dir, `.${name}.old`);
  await fs.promises.rm(temp, { recursive: true, force: true });
  await fs.promises.mkdir(temp);
  await saveModel(path.join(temp, MODEL_FILE));
  const { optimizer, ...rest } = train;
  await writeSafetensors(path.join(temp, STATE_FILE), tensorEntries(optimizer), {
    format: 'xception-torch-checkpoint',
    state: JSON.stringify({ train: rest, meta }),
  });
  // Swap: target -> .old, temp -> target, drop .old. Between the renames readers use .old.
  await fs.promises.rm(old, { recursive: true, force: true });
  if (fs.existsSync(target)) await fs.promises.rename(target, old);
  await fs.promises.rename(temp, target);
  await fs.promises.rm(old, { recursive: true, force: true });
  return target;
}

/** The folder of checkpoint `name`, or its previous version if a swap was interrupted; undefined if none. */
export function findCheckpoint(dir: string, name: string): string | undefined {
  for (const candidate of [path.join(dir, name), path.join(dir, `.${name}.old`)]) {
    if (fs.existsSync(path.join(candidate, MODEL_FILE)) && fs.existsSync(path.join(candidate, STATE_FILE))) return candidate;
  }
  return undefined;
}

export async function readCheckpointState<Meta>(folder: string): Promise<CheckpointState<Meta>> {
  const file = await readSafetensors(path.join(folder, STATE_FILE));
  if (file.metadata.format !== 'xception-torch-checkpoint' || !file.metadata.state) {
    throw new Error(`${folder} is not an xception-torch checkpoint (its ${STATE_FILE} has no training state)`);
  }
  const parsed = JSON.parse(file.metadata.state) as { train: CheckpointState<Meta>['train']; meta: Meta };
  const optimizer: NativeTensorInput[] = [...file.tensors].map(([name, t]) => {
    const dtype = t.dtype;
    if (!isNativeDtype(dtype)) throw new Error(`${folder}: optimizer tensor '${name}' has unsupported dtype ${dtype}`);
    return { name, dtype, shape: t.shape, data: t.data };
  });
  return { train: parsed.train, optimizer, meta: parsed.meta };
}

export function modelFile(folder: string): string {
  return path.join(folder, MODEL_FILE);
}
