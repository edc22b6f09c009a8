// How runs fail, and the exit code each failure promises: bad options are refused before any work
// (exit 2, one line), a diverging run stops with a clear message and keeps its last finite
// checkpoint (exit 1), errors keep their kind across the native worker threads, empty data splits
// are refused, and printed figures cope with missing or non-finite values.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createSyntheticDataset, DeviceDataset, writeCifar10Binary, Xception } from '../lib';
import { findCheckpoint, modelFile, readCheckpointState } from '../lib/checkpoint';
import { fromNative, ModelError, NativeRuntimeError, TrainingDivergedError } from '../lib/errors';
import { fixed, percent } from '../lib/report/format';
import { formatEpochLine } from '../lib/report/progress';
import { readSafetensors } from '../lib/safetensors';
import { Trainer, TrainerOptions } from '../lib/trainer';

jest.setTimeout(300_000);

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-failures-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[], cwd?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function tiny(outDir: string, extra: Partial<TrainerOptions> = {}): TrainerOptions {
  return {
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic',
    synthetic: { trainSize: 64, valSize: 16, testSize: 16 }, epochs: 1, batchSize: 8,
    preprocessing: { crop: 32, resize: 36 }, device: 'cpu', threads: 2, outDir: path.join(tmp, outDir), ...extra,
  };
}

describe('options refused before any work (exit 2, one line)', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['--threads 5000', ['train', '--quick', '--threads', '5000'], /--threads.*from 1 to \d+/],
    ['--batch-size 1', ['train', '--quick', '--batch-size', '1'], /--batch-size.*>= 2/],
    ['--train-limit 1', ['train', '--quick', '--train-limit', '1'], /--train-limit.*>= 2/],
    ['--val-size beyond CIFAR-10', ['train', '--dataset', 'cifar10', '--val-size', '50000'], /--val-size must leave training images.*49998/],
    ['--val-size beyond the synthetic limit', ['train', '--quick', '--val-size', '100000000'], /--val-size.*from 1 to 200000/],
    ['--image-size 100000', ['train', '--quick', '--image-size', '100000'], /--image-size.*from 1 to 2048/],
    ['--num-classes 10^9', ['train', '--quick', '--num-classes', '1000000000'], /--num-classes.*from 1 to 100000/],
    ['summary --image-size 100000', ['summary', '--image-size', '100000'], /--image-size.*from 1 to 2048/],
    ['summary --middle-blocks 5000', ['summary', '--middle-blocks', '5000'], /--middle-blocks.*from 0 to 64/],
  ];
  it.each(cases)('%s', (_name, args, message) => {
    const cwd = fs.mkdtempSync(path.join(tmp, 'refused-'));
    const r = cli(args, cwd);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    // Before any work: nothing printed and no run folder made.
    expect(r.stdout).toBe('');
    expect(fs.readdirSync(cwd)).toEqual([]);
  });

  it('the Trainer refuses the same values from code', async () => {
    expect(() => new Trainer(tiny('x', { batchSize: 1 }))).toThrow(/batchSize must be an integer of at least 2/);
    expect(() => new Trainer(tiny('x', { trainLimit: 1 }))).toThrow(/trainLimit must be an integer of at least 2/);
    expect(() => new Trainer(tiny('x', { threads: 5000 }))).toThrow(/threads must be at most/);
    expect(() => new Trainer(tiny('x', { preprocessing: { crop: 100_000 } }))).toThrow(/preprocessing.crop must be at most 2048/);
    expect(() => new Trainer(tiny('x', { synthetic: { trainSize: 1e9 } }))).toThrow(/synthetic.trainSize must be at most/);
    expect(() => new Xception({ middleFlowBlocks: 5000 })).toThrow(/middleFlowBlocks must be an integer from 0 to 64/);
    await expect(new Xception().summary(100_000)).rejects.toThrow(/imageSize must be an integer from 1 to 2048/);
  });
});

describe('a diverging run', () => {
  it('stops with the epoch and batch, keeps the last finite checkpoint, and exits 1 from the CLI', async () => {
    // One sound epoch, then the same run resumed with an absurd learning rate.
    const sound = new Trainer(tiny('diverge', { epochs: 1 }));
    await sound.fit();
    sound.dispose();
    const checkpoints = path.join(tmp, 'diverge', 'checkpoints');
    const before = fs.readFileSync(path.join(findCheckpoint(checkpoints, 'last')!, 'model.safetensors'));

    const wild = new Trainer(tiny('diverge', { epochs: 2, optimizer: { lr: 1e30 } }));
    const failure = await wild.fit({ resume: true }).catch((error: unknown) => error);
    wild.dispose();
    expect(failure).toBeInstanceOf(TrainingDivergedError);
    const diverged = failure as TrainingDivergedError;
    expect(diverged.epoch).toBe(2);
    expect(diverged.batch).toBeGreaterThanOrEqual(1);
    expect(diverged.message).toMatch(/loss became NaN or infinite at epoch 2, batch \d+ of 8; the last finite checkpoint is kept in/);

    // The checkpoint is the sound epoch's, byte for byte, and its weights are finite.
    const last = findCheckpoint(checkpoints, 'last')!;
    expect(fs.readFileSync(path.join(last, 'model.safetensors')).equals(before)).toBe(true);
    const state = await readCheckpointState<{ history: unknown[] }>(last);
    expect(state.meta.history).toHaveLength(1);
    const weights = await readSafetensors(modelFile(last));
    for (const [, tensor] of weights.tensors) {
      if (tensor.dtype !== 'F32') continue;
      const values = new Float32Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength / 4);
      expect(values.every(Number.isFinite)).toBe(true);
    }

    // From the command line: one line, exit 1 (a failure at run time, not a usage error).
    const r = cli(['train', '--quick', '--train-limit', '64', '--epochs', '1', '--lr', '1e30', '--out', path.join(tmp, 'diverge-cli')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xception-torch: error: training diverged: the loss became NaN or infinite at epoch 1, batch \d+ of 4; no checkpoint was written before it/m);
    expect(r.stderr).not.toMatch(/TypeError|toFixed/);
  });

  it('printed figures cope with null, NaN and infinity', () => {
    expect([fixed(null, 4), fixed(undefined, 1), fixed(NaN, 2), fixed(Infinity, 1), fixed(-Infinity, 1), fixed(0.12345, 3)])
      .toEqual(['n/a', 'n/a', 'nan', 'inf', '-inf', '0.123']);
    expect([percent(0.5), percent(null)]).toEqual(['50.00%', 'n/a']);
    const line = formatEpochLine({
      epoch: 1, trainLoss: null as unknown as number, trainAccuracy: 0.1, valLoss: NaN, valAccuracy: 0.1, lr: 1, lossScale: 1,
      seconds: 1, imagesPerSecond: 1, skippedSteps: 0,
    }, 2);
    expect(line).toContain('train loss n/a');
    expect(line).toContain('val loss nan');
  });
});

describe('error kinds across the native boundary', () => {
  it('bad input is a ModelError; a failed allocation on a worker thread is an OutOfMemoryError', async () => {
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 1 });
    await expect(model.forward({ shape: [1, 3, 2, 2], data: new Float32Array(12) })).rejects.toBeInstanceOf(ModelError);
    model.dispose();

    const set = createSyntheticDataset({ trainSize: 2, valSize: 1, testSize: 1 });
    const dataset = DeviceDataset.fromImageSet(set.train);
    // 2 x 3 x 60000^2 floats: 86 GB, refused by the allocator at once.
    const failure = await dataset.evalBatch([0, 1], { crop: 60_000, evalResize: 60_000 }).catch((e: unknown) => e);
    dataset.dispose();
    expect((failure as { code?: string }).code).toBe('XT_OUT_OF_MEMORY');
    const mapped = fromNative(failure);
    expect(mapped).toBeInstanceOf(NativeRuntimeError);
    expect(mapped).not.toBeInstanceOf(ModelError);
    expect(mapped.name).toBe('OutOfMemoryError');
  });

  it('fromNative keeps each kind apart', () => {
    const tagged = (code: string, make: () => Error = () => new Error('x')) => Object.assign(make(), { code });
    expect(fromNative(tagged('XT_INVALID_ARGUMENT', () => new RangeError('bad')))).toBeInstanceOf(ModelError);
    expect(fromNative(tagged('XT_RUNTIME'))).toBeInstanceOf(NativeRuntimeError);
    expect(fromNative(tagged('XT_OUT_OF_MEMORY'))).toMatchObject({ code: 'XT_OUT_OF_MEMORY' });
    expect(fromNative(new Error('plain'))).not.toBeInstanceOf(ModelError);
  });
});

describe('empty data', () => {
  it('a split with no images is an error, not an accuracy computed from nothing', async () => {
    const set = createSyntheticDataset({ trainSize: 32, valSize: 8, testSize: 0 });
    const trainer = new Trainer({ ...tiny('empty-split'), dataset: set });
    await expect(trainer.fit()).rejects.toThrow(/the test split of .* has 0 images; it needs at least 1/);
    trainer.dispose();
  });

  it('an empty test_batch.bin stops train with exit 1 and names the problem', async () => {
    const data = fs.mkdtempSync(path.join(tmp, 'cifar-empty-test-'));
    const set = createSyntheticDataset({ trainSize: 200, valSize: 0, testSize: 20, seed: 3 });
    const folder = await writeCifar10Binary(data, { train: set.train, test: set.test, classNames: set.classNames });
    fs.writeFileSync(path.join(folder, 'test_batch.bin'), Buffer.alloc(0));
    const r = cli(['train', '--dataset', 'cifar10', '--data-dir', data, '--val-size', '50', '--image-size', '32',
      '--batch-size', '16', '--epochs', '1', '--device', 'cpu', '--out', path.join(tmp, 'cifar-empty-run')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/test split .* 0 images/);
    expect(fs.existsSync(path.join(tmp, 'cifar-empty-run', 'checkpoints'))).toBe(false);
  });
});
