// Resuming a run: the checkpoint fit({ resume: true }) continues from (the run folder's last one),
// read and checked against the Trainer resuming it before anything of it is applied.
import * as path from 'path';
import { CheckpointError, CheckpointState, findCheckpoint, readCheckpointState, STATE_FILE } from './checkpoint';
import type { RunMeta } from './run-files';

/**
 * The last checkpoint under `checkpoints` (its folder and state), refused unless it was written for
 * this run's model (`meta`'s model and model options) at a batch inside an epoch of this run's
 * `batchesPerEpoch`.
 */
export async function readResumeCheckpoint(
  checkpoints: string,
  meta: RunMeta,
  batchesPerEpoch: number,
): Promise<{ folder: string; saved: CheckpointState<RunMeta> }> {
  const folder = findCheckpoint(checkpoints, 'last');
  if (!folder) throw new Error(`nothing to resume: no checkpoint in ${checkpoints}`);
  const saved = await readCheckpointState<RunMeta>(folder);
  if (saved.meta.model !== meta.model || JSON.stringify(saved.meta.modelOptions) !== JSON.stringify(meta.modelOptions)) {
    throw new Error(`the checkpoint in ${folder} is of ${saved.meta.model} ${JSON.stringify(saved.meta.modelOptions)}, not of this trainer's model`);
  }
  const { nextBatch } = saved.train.position;
  if (nextBatch >= batchesPerEpoch) {
    throw new CheckpointError(path.join(folder, STATE_FILE), `train.position.nextBatch must be below the ${batchesPerEpoch} batches of an epoch of this run; got ${nextBatch}`);
  }
  return { folder, saved };
}
