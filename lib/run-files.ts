// What a run folder's files hold, described once: the per-epoch records of history.json and
// history.csv, and the run metadata every checkpoint carries (lib/checkpoint.ts stores it; the
// Trainer writes it; the commands read it back through lib/commands/run-folder.ts).
import type { ModelName } from './models';

/** The fields of an epoch record, in the order of history.csv's columns. */
export const EPOCH_RECORD_FIELDS = [
  'epoch', 'trainLoss', 'trainAccuracy', 'valLoss', 'valAccuracy', 'lr', 'lossScale', 'seconds', 'imagesPerSecond', 'skippedSteps',
] as const;

/** One epoch of history.json / history.csv. Non-finite figures are written as null in JSON. */
export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  valLoss: number;
  valAccuracy: number;
  lr: number;
  lossScale: number;
  seconds: number;
  imagesPerSecond: number;
  skippedSteps: number;
  /**
   * Data-parallel only: seconds this rank waited for gradient all-reduces that backward did not
   * hide, over the epoch (not a history.csv column).
   */
  exposedCommunicationSeconds?: number;
}

/** The metadata in each checkpoint's state: which model, the resolved options, the history so far. */
export interface RunMeta {
  model: ModelName;
  modelOptions: Record<string, unknown>;
  /** The resolved options (resolveTrainerOptions()). */
  options: Record<string, unknown>;
  history: EpochRecord[];
  bestValAccuracy: number;
  bestEpoch?: number;
  /** The dataset's class names, one per output in order (predict labels its classes with them). */
  classNames?: string[];
}
