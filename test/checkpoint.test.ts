// Checkpoints (lib/checkpoint.ts): a kill at any point of a write, or of the write after it, leaves
// a whole, loadable checkpoint for findCheckpoint; and a saved state is checked field by field when
// it is read (lib/checkpoint-state.ts).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CheckpointError, CheckpointStep, copyCheckpoint, findCheckpoint, readCheckpointState, removeSupersededCheckpoints, STATE_FILE, writeCheckpoint } from '../lib/checkpoint';
import type { NativeTrainState } from '../lib/native';
import { readSafetensors, writeSafetensors } from '../lib/safetensors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-checkpoint-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => jest.restoreAllMocks());

let counter = 0;
const freshFolder = () => path.join(tmp, `c-${++counter}`);
const f32 = (values: number[]): Uint8Array => new Uint8Array(new Float32Array(values).buffer);

/** A training state as the Trainer saves it after `epoch` epochs. */
function trainState(epoch: number): NativeTrainState {
  return {
    position: { epoch, nextBatch: 0, lossSum: 0, correct: 0, seen: 0, seconds: 0, pendingLoss: 0, pendingCorrect: 0 },
    optimizerSteps: epoch * 4,
    scaler: { scale: 65536, growthTracker: 0, skippedSteps: 0 },
    optimizer: [{ name: 'w.exp_avg', dtype: 'F32', shape: [2], data: f32([epoch, epoch]).buffer as ArrayBuffer }] as never,
  };
}

function record(epoch: number) {
  return { epoch, trainLoss: 1, trainAccuracy: 0.5, valLoss: null, valAccuracy: 0.5, lr: 0.001, lossScale: 1, seconds: 1, imagesPerSecond: 10, skippedSteps: 0 };
}

/** The Trainer's meta after `epoch` epochs; `version` tells checkpoints apart. */
function meta(epoch: number, version = epoch) {
  return {
    model: 'xception', modelOptions: { numClasses: 10 }, options: { version },
    history: Array.from({ length: epoch }, (_, i) => record(i + 1)), bestValAccuracy: 0.5, bestEpoch: epoch || undefined,
  };
}

/** Writes version `v` of checkpoint 'last' (its weights are [v, v]). */
const save = (dir: string, v: number) => writeCheckpoint(
  dir, 'last', (file) => writeSafetensors(file, [['w', { dtype: 'F32', shape: [2], data: f32([v, v]) }]]), trainState(v), meta(v),
);

/** The version of the whole checkpoint findCheckpoint finds (undefined if none); fails if it is not loadable. */
async function foundVersion(dir: string): Promise<number | undefined> {
  const folder = findCheckpoint(dir, 'last');
  if (!folder) return undefined;
  const state = await readCheckpointState<{ options: { version: number } }>(folder);
  const weights = await readSafetensors(path.join(folder, 'model.safetensors'));
  const w = Array.from(new Float32Array(weights.tensors.get('w')!.data.slice().buffer));
  expect(w).toEqual([state.meta.options.version, state.meta.options.version]);
  expect(state.train.position.epoch).toBe(state.meta.options.version);
  return state.meta.options.version;
}

class Killed extends Error {}

/**
 * Runs `work` as if the process were killed just before its `at`-th rename or removal: that call
 * and every later one fail without touching the disk. Returns whether the kill happened.
 */
async function killedAt(at: number, work: () => Promise<unknown>): Promise<boolean> {
  let calls = 0;
  const { rename, rm } = fs.promises;
  const gate = <A extends unknown[], R>(real: (...args: A) => Promise<R>) => async (...args: A): Promise<R> => {
    if (++calls >= at) throw new Killed(`killed before call ${at}`);
    return real(...args);
  };
  const spies = [jest.spyOn(fs.promises, 'rename').mockImplementation(gate(rename)), jest.spyOn(fs.promises, 'rm').mockImplementation(gate(rm))];
  try {
    await work();
    return false;
  } catch (error) {
    if (error instanceof Killed) return true;
    throw error;
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

describe('writeCheckpoint: a kill at any point leaves a whole checkpoint', () => {
  // Where the folder starts: nothing; a checkpoint; only .last.old (a swap cut between its renames);
  // a checkpoint and a leftover .last.old.
  const starts: Array<[string, (dir: string) => Promise<void>, number | undefined]> = [
    ['an empty folder', async () => undefined, undefined],
    ['a checkpoint', async (dir) => void (await save(dir, 1)), 1],
    ['only .last.old', async (dir) => {
      await save(dir, 1);
      fs.renameSync(path.join(dir, 'last'), path.join(dir, '.last.old'));
    }, 1],
    ['a checkpoint and .last.old', async (dir) => {
      await save(dir, 0);
      fs.cpSync(path.join(dir, 'last'), path.join(dir, '.last.old'), { recursive: true });
      await save(dir, 1);
      fs.cpSync(path.join(dir, 'last'), path.join(dir, '.last.old'), { recursive: true });
    }, 1],
  ];

  it.each(starts)('starting from %s, then two saves, each killed at every step', async (_label, prepare, before) => {
    let scenarios = 0;
    for (let first = 1; ; first++) {
      let firstKilled = false;
      for (let second = 1; ; second++) {
        const dir = freshFolder();
        await prepare(dir);
        firstKilled = await killedAt(first, () => save(dir, 2));
        const afterFirst = await foundVersion(dir);
        // Nothing is lost: the previous checkpoint or the new one, whole.
        if (firstKilled) expect([before ?? afterFirst, 2]).toContain(afterFirst);
        else expect(afterFirst).toBe(2);
        if (before !== undefined) expect(afterFirst).toBeDefined();
        // The next save (the resumed run's), killed in turn.
        const secondKilled = await killedAt(second, () => save(dir, 3));
        const afterSecond = await foundVersion(dir);
        if (afterFirst !== undefined) expect(afterSecond).toBeDefined();
        expect([afterFirst, 3]).toContain(afterSecond);
        if (!secondKilled) expect(afterSecond).toBe(3);
        // Whatever happened, a later save completes.
        await save(dir, 4);
        expect(await foundVersion(dir)).toBe(4);
        scenarios++;
        if (!secondKilled) break;
      }
      if (!firstKilled) break;
    }
    expect(scenarios).toBeGreaterThan(20);
  }, 60_000);

  it('leaves no temporary folder and no .last.old after a completed save', async () => {
    const dir = freshFolder();
    await save(dir, 1);
    await save(dir, 2);
    expect(fs.readdirSync(dir)).toEqual(['last']);
  });

  it('copyCheckpoint: the copy is whole and stays the version it copied when the original is written again', async () => {
    const dir = freshFolder();
    const original = await save(dir, 1);
    await copyCheckpoint(dir, 'best', original);
    const files = (name: string) => ['model.safetensors', STATE_FILE].map((f) => fs.readFileSync(path.join(dir, name, f)));
    expect(files('best')).toEqual(files('last'));
    await save(dir, 2);
    expect(files('best')).not.toEqual(files('last'));
    const best = await readCheckpointState<{ options: { version: number } }>(findCheckpoint(dir, 'best')!);
    expect(best.meta.options.version).toBe(1);
    expect(await foundVersion(dir)).toBe(2);
    // Copying over an existing checkpoint swaps it like a write, leaving nothing behind.
    await copyCheckpoint(dir, 'best', findCheckpoint(dir, 'last')!);
    expect(files('best')).toEqual(files('last'));
    expect(fs.readdirSync(dir).sort()).toEqual(['best', 'last']);
  });

  it('removeSupersededCheckpoints: an .old left by a swap killed after its second rename goes; an only copy stays', async () => {
    const dir = freshFolder();
    // Version v of 'last', the process killed right after `step`.
    const killedAfter = (v: number, step: CheckpointStep) => writeCheckpoint(
      dir, 'last', (file) => writeSafetensors(file, [['w', { dtype: 'F32', shape: [2], data: f32([v, v]) }]]), trainState(v), meta(v),
      (done) => {
        if (done === step) throw new Killed(`killed after ${step}`);
      },
    ).catch((e: unknown) => expect(e).toBeInstanceOf(Killed));
    await save(dir, 1);
    // After the second rename, before .last.old is removed: last (version 2) is whole beside it.
    await killedAfter(2, 'swapped');
    expect(fs.readdirSync(dir).sort()).toEqual(['.last.old', 'last']);
    expect(await removeSupersededCheckpoints(dir)).toEqual(['.last.old']);
    expect(fs.readdirSync(dir)).toEqual(['last']);
    expect(await foundVersion(dir)).toBe(2);
    // Between the two renames: .last.old is the only whole copy, and stays.
    await killedAfter(3, 'moved-to-old');
    expect(fs.readdirSync(dir).filter((n) => !n.includes('.tmp-'))).toEqual(['.last.old']);
    expect(await removeSupersededCheckpoints(dir)).toEqual([]);
    expect(await foundVersion(dir)).toBe(2);
  });
});

describe('readCheckpointState checks the saved state', () => {
  /** A checkpoint folder whose state is `state` (an object is written as JSON, a string as it is). */
  async function checkpointWith(state: unknown): Promise<string> {
    const folder = freshFolder();
    fs.mkdirSync(folder, { recursive: true });
    await writeSafetensors(path.join(folder, STATE_FILE), [], {
      format: 'xception-torch-checkpoint', state: typeof state === 'string' ? state : JSON.stringify(state),
    });
    return folder;
  }
  const good = () => {
    const { optimizer: _, ...train } = trainState(2);
    return { train, meta: meta(2) };
  };
  type State = ReturnType<typeof good>;
  const edit = (change: (s: State & Record<string, any>) => void) => { // eslint-disable-line @typescript-eslint/no-explicit-any
    const s = good();
    change(s);
    return s;
  };

  it('accepts a state as the Trainer writes it, a NaN (null) loss sum included', async () => {
    await expect(readCheckpointState(await checkpointWith(good()))).resolves.toMatchObject({ train: { position: { epoch: 2 } } });
    const nan = await readCheckpointState(await checkpointWith(edit((s) => Object.assign(s.train.position, { lossSum: null, pendingLoss: null }))));
    expect(nan.train.position.lossSum).toBeNaN();
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['a negative epoch', edit((s) => (s.train.position.epoch = -1_000_000)), /train\.position\.epoch must be an integer from 0 to 1000000; got -1000000/],
    ['a huge nextBatch', edit((s) => (s.train.position.nextBatch = 1e12)), /train\.position\.nextBatch must be an integer from 0 to 1000000000; got 1000000000000/],
    ['a fractional nextBatch', edit((s) => (s.train.position.nextBatch = 1.5)), /train\.position\.nextBatch must be an integer/],
    ['a string epoch', edit((s) => ((s.train.position as Record<string, unknown>).epoch = '2')), /train\.position\.epoch must be an integer .*; got "2"/],
    ['no position', edit((s) => delete (s.train as Partial<State['train']>).position), /train\.position must be an object; got nothing/],
    ['more correct than seen', edit((s) => Object.assign(s.train.position, { correct: 5, seen: 4 })), /correct \+ pendingCorrect must be at most seen \(4\); got 5/],
    ['a zero loss scale', edit((s) => (s.train.scaler.scale = 0)), /train\.scaler\.scale must be a positive number; got 0/],
    ['negative optimizer steps', edit((s) => (s.train.optimizerSteps = -1)), /train\.optimizerSteps must be an integer from 0/],
    ['a history that is not an array', edit((s) => ((s.meta as Record<string, unknown>).history = { 0: record(1) })), /meta\.history must be an array of epoch records/],
    ['a history shorter than the epochs', edit((s) => s.meta.history.pop()), /meta\.history must be one record per finished epoch \(train\.position\.epoch is 2\); got "1 records"/],
    ['a record with a string number', edit((s) => ((s.meta.history[1] as Record<string, unknown>).valAccuracy = '0.5')), /meta\.history\[1\]\.valAccuracy must be a finite number or null; got "0\.5"/],
    ['a record that is not an object', edit((s) => ((s.meta.history as unknown[])[0] = 7)), /meta\.history\[0\] must be an object; got 7/],
    ['records out of order', edit((s) => (s.meta.history[0].epoch = 2)), /meta\.history\[0\]\.epoch must be 1; got 2/],
    ['a string bestValAccuracy', edit((s) => ((s.meta as Record<string, unknown>).bestValAccuracy = 'high')), /meta\.bestValAccuracy must be a number from -1 \(none yet\) to 1; got "high"/],
    ['a bestEpoch past the history', edit((s) => (s.meta.bestEpoch = 9)), /meta\.bestEpoch must be an integer from 1 to 2; got 9/],
    ['an unknown model', edit((s) => (s.meta.model = 'resnet')), /meta\.model must be one of xception, inception_v3; got "resnet"/],
    ['options that are not an object', edit((s) => ((s.meta as Record<string, unknown>).options = [1])), /meta\.options must be an object; got \[1\]/],
    ['a state that is not JSON', '{"train": ', /its state is not valid JSON/],
    ['a state that is an array', '[1, 2]', /the state must be an object; got \[1,2\]/],
  ];
  it.each(bad)('refuses %s, naming the file and the field', async (_label, state, message) => {
    const folder = await checkpointWith(state);
    const error = await readCheckpointState(folder).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(CheckpointError);
    expect((error as Error).message).toMatch(new RegExp(`^${path.join(folder, STATE_FILE).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is not a usable checkpoint state: `));
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message.length).toBeLessThan(400);
  });
});

describe('train --resume from a checkpoint with a bad state (dist/lib/cli.js)', () => {
  const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const source = path.join(tmp, 'trained');
  beforeAll(() => {
    const r = run(['train', '--quick', '--train-limit', '32', '--eval-limit', '16', '--epochs', '1', '--out', source]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  }, 300_000);

  /** A copy of the trained run whose checkpoints/last state is changed by `change`. */
  async function runWith(change: (state: { train: NativeTrainState; meta: Record<string, unknown> }) => void): Promise<string> {
    const out = freshFolder();
    fs.cpSync(source, out, { recursive: true });
    const file = path.join(out, 'checkpoints', 'last', STATE_FILE);
    const saved = await readSafetensors(file);
    const state = JSON.parse(saved.metadata.state);
    change(state);
    await writeSafetensors(file, saved.tensors, { ...saved.metadata, state: JSON.stringify(state) });
    return out;
  }

  it('a run killed after its last checkpoint but before metrics.json: --resume writes the metrics and exits 0', () => {
    const out = freshFolder();
    fs.cpSync(source, out, { recursive: true });
    const expected = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
    fs.rmSync(path.join(out, 'metrics.json'));
    const r = run(['train', '--resume', '--out', out]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^finishing \(all 1 epochs trained, the test metrics not yet written\): xception/m);
    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
    expect(metrics).toMatchObject({ epochs: 1, testLoss: expected.testLoss, testAccuracy: expected.testAccuracy });
    // Finished now: a second --resume has nothing to do.
    expect(run(['train', '--resume', '--out', out]).code).toBe(2);
  }, 120_000);

  const cases: Array<[string, (s: { train: NativeTrainState; meta: Record<string, unknown> }) => void, RegExp]> = [
    ['an epoch of -1000000', (s) => (s.train.position.epoch = -1_000_000), /train\.position\.epoch must be an integer from 0 to 1000000; got -1000000$/],
    ['a nextBatch of 1e9', (s) => (s.train.position.nextBatch = 1e9), /train\.position\.nextBatch must be below the 2 batches of an epoch of this run; got 1000000000$/],
    ['a history that is not an array', (s) => (s.meta.history = 'none'), /meta\.history must be an array of epoch records; got "none"$/],
  ];
  it.each(cases)('%s: exit 1, one line naming the file and the field, nothing trained', async (_label, change, message) => {
    const out = await runWith(change);
    const before = fs.readFileSync(path.join(out, 'history.json'), 'utf8');
    const r = run(['train', '--resume', '--epochs', '2', '--out', out]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`xception-torch: error: ${path.join(out, 'checkpoints', 'last', STATE_FILE)} is not a usable checkpoint state: `);
    expect(lines[0]).toMatch(message);
    expect(fs.readFileSync(path.join(out, 'history.json'), 'utf8')).toBe(before);
    expect(fs.existsSync(path.join(out, '.lock'))).toBe(false);
  }, 120_000);
});
