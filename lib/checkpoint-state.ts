// The JSON state a checkpoint carries (lib/checkpoint.ts), checked field by field when it is read,
// as strictly as the safetensors parser checks tensors: a file that was edited, corrupted or written
// by something else gives a CheckpointError naming the file and the field, never a run that trains
// from a nonsensical position.
import type { NativeTrainState } from './native';
import { EPOCH_RECORD_FIELDS } from './run-files';

/** A checkpoint that cannot be used (exit code 1 in the CLI: a bad file, found while running). */
export class CheckpointError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`${file} is not a usable checkpoint state: ${problem}`);
    this.name = 'CheckpointError';
  }
}

/** Bounds far beyond any real run, that keep the numbers a resume trusts sane. */
export const STATE_LIMITS = Object.freeze({ epochs: 1_000_000, batches: 1_000_000_000 });

/** The training state without the optimizer tensors (those are checked by the safetensors parser and the addon). */
export type SavedTrainState = Omit<NativeTrainState, 'optimizer'>;

/** A saved state as it is in the file: a NaN loss sum is null in JSON. */
type StoredTrainState = Omit<SavedTrainState, 'position'> & {
  position: Omit<SavedTrainState['position'], 'lossSum' | 'pendingLoss'> & { lossSum: number | null; pendingLoss: number | null };
};

/** The fields of one history record, each a number or null (JSON's NaN). */
const RECORD_FIELDS = EPOCH_RECORD_FIELDS;

const MODEL_NAMES = ['xception', 'inception_v3'];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** JSON of a value for a message, cut short. */
function shown(v: unknown): string {
  const text = v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

/** Checks the parsed state { train, meta } of `file`; returns it typed. */
export function checkSavedState<Meta>(value: unknown, file: string): { train: StoredTrainState; meta: Meta } {
  const fail = (field: string, expected: string, got: unknown): never => {
    throw new CheckpointError(file, `${field} must be ${expected}; got ${shown(got)}`);
  };
  const object = (v: unknown, field: string): Record<string, unknown> => (isObject(v) ? v : fail(field, 'an object', v));
  const integer = (o: Record<string, unknown>, field: string, key: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = o[key];
    return Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max
      ? (v as number) : fail(`${field}.${key}`, `an integer from ${min} to ${max}`, v);
  };
  const finite = (o: Record<string, unknown>, field: string, key: string, min = -Infinity): number => {
    const v = o[key];
    return typeof v === 'number' && Number.isFinite(v) && v >= min ? v : fail(`${field}.${key}`, `a finite number${min > -Infinity ? ` >= ${min}` : ''}`, v);
  };

  const state = object(value, 'the state');
  const train = object(state.train, 'train');
  const position = object(train.position, 'train.position');
  const epoch = integer(position, 'train.position', 'epoch', 0, STATE_LIMITS.epochs);
  integer(position, 'train.position', 'nextBatch', 0, STATE_LIMITS.batches);
  // Loss sums may be NaN (null in JSON): with a loss scaler, a step with a non-finite loss is skipped and the run goes on.
  for (const key of ['lossSum', 'pendingLoss']) if (position[key] !== null) finite(position, 'train.position', key);
  finite(position, 'train.position', 'seconds', 0);
  const seen = integer(position, 'train.position', 'seen', 0);
  const correct = integer(position, 'train.position', 'correct', 0) + integer(position, 'train.position', 'pendingCorrect', 0);
  if (correct > seen) fail('train.position.correct + pendingCorrect', `at most seen (${seen})`, correct);
  integer(train, 'train', 'optimizerSteps', 0);
  const scaler = object(train.scaler, 'train.scaler');
  if (!(finite(scaler, 'train.scaler', 'scale') > 0)) fail('train.scaler.scale', 'a positive number', scaler.scale);
  integer(scaler, 'train.scaler', 'growthTracker', 0);
  integer(scaler, 'train.scaler', 'skippedSteps', 0);

  const meta = object(state.meta, 'meta');
  if (!MODEL_NAMES.includes(meta.model as string)) fail('meta.model', `one of ${MODEL_NAMES.join(', ')}`, meta.model);
  object(meta.modelOptions, 'meta.modelOptions');
  object(meta.options, 'meta.options');
  const history = Array.isArray(meta.history) ? meta.history : fail('meta.history', 'an array of epoch records', meta.history);
  if (history.length !== epoch) fail('meta.history', `one record per finished epoch (train.position.epoch is ${epoch})`, `${history.length} records`);
  history.forEach((record, i) => {
    const r = object(record, `meta.history[${i}]`);
    for (const key of RECORD_FIELDS) {
      const v = r[key];
      if (!(v === null || (typeof v === 'number' && Number.isFinite(v)))) fail(`meta.history[${i}].${key}`, 'a finite number or null', v);
    }
    if (r.epoch !== i + 1) fail(`meta.history[${i}].epoch`, String(i + 1), r.epoch);
  });
  const best = meta.bestValAccuracy;
  if (!(typeof best === 'number' && best >= -1 && best <= 1)) fail('meta.bestValAccuracy', 'a number from -1 (none yet) to 1', best);
  if (meta.bestEpoch !== undefined) integer(meta, 'meta', 'bestEpoch', 1, Math.max(1, history.length));
  return { train: train as unknown as StoredTrainState, meta: meta as Meta };
}
