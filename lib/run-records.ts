// The records fit() keeps in the run folder besides its checkpoints: each epoch's record, in
// history.json and history.csv (rewritten after every epoch), and metrics.json, written once the last
// epoch is scored on the test split. What each holds is described in lib/run-files.ts.
import * as path from 'path';
import { writeFileAtomic } from './atomic-write';
import type { DistributedBackend } from './distributed/settings';
import type { EvalResult } from './eval-result';
import type { NativeEpochResult } from './native';
import { formatHistoryCsv } from './report/history';
import type { EpochRecord, RunMeta } from './run-files';
import { runtimeInfo } from './runtime';

/** Where and how the run trained, as metrics.json's runtime records it (besides what runtimeInfo() says). */
export interface RunPlacement {
  /** The device the weights are on, as libtorch names it. */
  device: string;
  /** Whether the last epoch's optimizer ran the fused kernels. */
  fusedAdam: boolean;
  worldSize: number;
  backend: DistributedBackend | null;
}

/**
 * The record of epoch `epoch` (0-based) from its training result and its validation score;
 * `dataParallel` adds the seconds spent waiting on gradient all-reduces.
 */
export function epochRecord(epoch: number, result: NativeEpochResult, val: EvalResult, dataParallel: boolean): EpochRecord {
  return {
    epoch: epoch + 1,
    trainLoss: result.loss,
    trainAccuracy: result.accuracy,
    valLoss: val.loss,
    valAccuracy: val.accuracy,
    lr: result.lr,
    lossScale: result.lossScale,
    seconds: result.seconds,
    imagesPerSecond: result.seconds > 0 ? result.images / result.seconds : 0,
    skippedSteps: result.skippedSteps,
    ...(dataParallel ? { exposedCommunicationSeconds: result.exposedCommunicationSeconds } : {}),
  };
}

/** history.json (the options and the epochs) and history.csv, each replaced whole. */
export async function writeHistory(outDir: string, meta: RunMeta): Promise<void> {
  await writeFileAtomic(path.join(outDir, 'history.json'), JSON.stringify({ options: meta.options, epochs: meta.history }, null, 2) + '\n');
  await writeFileAtomic(path.join(outDir, 'history.csv'), formatHistoryCsv(meta.history));
}

/** metrics.json: the test figures of the finished run, its totals over the epochs, and where it ran. */
export async function writeMetrics(outDir: string, meta: RunMeta, test: EvalResult, parameters: number, placement: RunPlacement): Promise<void> {
  const info = runtimeInfo();
  const trainingSeconds = meta.history.reduce((s, e) => s + e.seconds, 0);
  const images = meta.history.reduce((s, e) => s + e.imagesPerSecond * e.seconds, 0);
  const metrics = {
    model: meta.model,
    parameters,
    testAccuracy: test.accuracy,
    testLoss: test.loss,
    trainingSeconds,
    imagesPerSecond: trainingSeconds > 0 ? images / trainingSeconds : 0,
    epochs: meta.history.length,
    bestEpoch: meta.bestEpoch,
    bestValAccuracy: meta.bestValAccuracy,
    perClassAccuracy: Object.fromEntries(test.classNames.map((c, i) => [c, test.perClassAccuracy[i]])),
    options: meta.options,
    runtime: {
      libtorch: info.libtorchVersion, device: placement.device, cuda: info.cudaAvailable, threads: info.threads, fusedAdam: placement.fusedAdam,
      worldSize: placement.worldSize, backend: placement.backend,
    },
  };
  await writeFileAtomic(path.join(outDir, 'metrics.json'), JSON.stringify(metrics, null, 2) + '\n');
}
