// The Trainer end to end on the CPU: it learns, it writes its run folder, an interrupted and
// resumed run ends exactly where an uninterrupted one does, and memory stays flat across epochs.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createSyntheticDataset, Xception } from '../lib';
import { findCheckpoint, modelFile, readCheckpointState } from '../lib/checkpoint';
import { Trainer, TrainerOptions, EpochRecord } from '../lib/trainer';
import type { DatasetSplits } from '../lib/datasets';

// Training on a 2-core CPU is slow, more so when the machine is busy.
jest.setTimeout(600_000);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-train-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const small = { crop: 32, resize: 36 };

describe('learning', () => {
  it('Xception reaches >= 0.8 validation accuracy on the easy synthetic set (chance: 0.1)', async () => {
    const trainer = new Trainer({
      model: 'xception', dataset: 'synthetic', synthetic: { trainSize: 480, valSize: 100, testSize: 100, difficulty: 'easy' },
      epochs: 4, batchSize: 16, preprocessing: small, outDir: path.join(dir, 'learn'), device: 'cpu',
    });
    const epochs: EpochRecord[] = [];
    let batches = 0;
    trainer.on('epoch', (e: EpochRecord) => epochs.push(e));
    trainer.on('batch', () => batches++);
    const history = await trainer.fit();
    expect(history.interrupted).toBe(false);
    expect(epochs.map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
    expect(batches).toBeGreaterThanOrEqual(8);
    // The exact figures depend on the CPU's kernels (float rounding): the best of these 4 epochs was
    // 0.86 on one 2-core machine and above 0.9 on another; a model that does not learn stays near 0.1.
    expect(Math.max(...history.epochs.map((e) => e.valAccuracy))).toBeGreaterThanOrEqual(0.8);
    expect(history.epochs[3].trainLoss).toBeLessThan(history.epochs[0].trainLoss);

    // The run folder a person can read.
    const out = path.join(dir, 'learn');
    const json = JSON.parse(fs.readFileSync(path.join(out, 'history.json'), 'utf8'));
    expect(json.epochs).toHaveLength(4);
    expect(json.options.batchSize).toBe(16);
    const csv = fs.readFileSync(path.join(out, 'history.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('epoch,trainLoss,trainAccuracy,valLoss,valAccuracy,lr,lossScale,seconds,imagesPerSecond,skippedSteps');
    expect(csv).toHaveLength(5);
    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
    expect(metrics.model).toBe('xception');
    expect(metrics.parameters).toBe(20_827_442);
    expect(metrics.testAccuracy).toBeGreaterThan(0.5);
    expect(metrics.trainingSeconds).toBeCloseTo(history.epochs.reduce((s, e) => s + e.seconds, 0), 6);
    expect(metrics.runtime.libtorch).toMatch(/^\d+\.\d+/);
    for (const name of ['last', 'best']) expect(findCheckpoint(path.join(out, 'checkpoints'), name)).toBeDefined();

    // evaluate() gives per-class accuracy and a confusion matrix that add up.
    const test = await trainer.evaluate('test');
    expect(test.accuracy).toBeCloseTo(metrics.testAccuracy, 12);
    expect(test.confusion.flat().reduce((a, b) => a + b, 0)).toBe(100);
    expect(test.perClassAccuracy).toHaveLength(10);
    trainer.dispose();
  });

  it('Inception V3 learns at 75x75 (without the aux head, which needs 299)', async () => {
    await expect(new Trainer({ model: 'inception_v3', dataset: 'synthetic', synthetic: { trainSize: 16, valSize: 4, testSize: 4 }, preprocessing: { crop: 75 } }).fit())
      .rejects.toThrow(/auxiliary classifier needs training crops of at least 299x299 \(got 75x75\)/);
    const trainer = new Trainer({
      model: 'inception_v3', modelOptions: { numClasses: 10, auxLogits: false }, dataset: 'synthetic', synthetic: { trainSize: 160, valSize: 20, testSize: 20, difficulty: 'easy' },
      epochs: 2, batchSize: 16, preprocessing: { crop: 75, resize: 80 }, outDir: path.join(dir, 'inception'), device: 'cpu',
    });
    const history = await trainer.fit();
    const [first, second] = history.epochs;
    expect(second.trainLoss).toBeLessThan(first.trainLoss);
    expect(second.trainAccuracy).toBeGreaterThan(0.2);  // twice chance (0.1)
    trainer.dispose();
  });
});

describe('interruption and resume', () => {
  let splits: DatasetSplits;
  beforeAll(() => {
    splits = createSyntheticDataset({ trainSize: 112, valSize: 24, testSize: 24, difficulty: 'easy', seed: 3 });
  });
  const options = (outDir: string): TrainerOptions => ({
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1, dropout: 0.2 }, dataset: splits,
    epochs: 2, batchSize: 16, preprocessing: small, outDir, seed: 5, device: 'cpu', optimizer: { lr: 2e-3 }, schedule: 'cosine',
  });

  it('an aborted run leaves a loadable checkpoint, and resuming ends exactly like an uninterrupted run', async () => {
    const straight = new Trainer(options(path.join(dir, 'straight')));
    const reference = await straight.fit();
    straight.dispose();

    const out = path.join(dir, 'interrupted');
    const first = new Trainer(options(out));
    const controller = new AbortController();
    first.on('batch', (p: { epoch: number; batch: number }) => {
      if (p.epoch === 0 && p.batch >= 5) controller.abort();
    });
    const partial = await first.fit({ signal: controller.signal });
    first.dispose();
    expect(partial.interrupted).toBe(true);
    expect(fs.existsSync(path.join(out, 'metrics.json'))).toBe(false);

    const folder = findCheckpoint(path.join(out, 'checkpoints'), 'last');
    expect(folder).toBeDefined();
    const state = await readCheckpointState<{ history: unknown[] }>(folder!);
    expect(state.train.position.nextBatch + state.train.position.epoch).toBeGreaterThan(0);
    const check = new Xception({ numClasses: 10, middleFlowBlocks: 1, dropout: 0.2 });
    await check.loadSafetensors(modelFile(folder!));  // strict: every key, every shape
    check.dispose();

    const resumed = new Trainer(options(out));
    const history = await resumed.fit({ resume: true });
    resumed.dispose();
    expect(history.interrupted).toBe(false);
    const strip = (h: EpochRecord[]) => h.map(({ seconds, imagesPerSecond, ...rest }) => rest);
    expect(strip(history.epochs)).toEqual(strip(reference.epochs));
    const a = JSON.parse(fs.readFileSync(path.join(dir, 'straight', 'metrics.json'), 'utf8'));
    const b = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8'));
    expect([b.testAccuracy, b.testLoss]).toEqual([a.testAccuracy, a.testLoss]);
    const wa = fs.readFileSync(path.join(dir, 'straight', 'checkpoints', 'last', 'model.safetensors'));
    const wb = fs.readFileSync(path.join(out, 'checkpoints', 'last', 'model.safetensors'));
    expect(Buffer.compare(wa, wb)).toBe(0);
  });

  it('refuses to resume without a checkpoint or into another model', async () => {
    await expect(new Trainer(options(path.join(dir, 'nothing'))).fit({ resume: true })).rejects.toThrow(/nothing to resume: no checkpoint in/);
    const other = new Trainer({ ...options(path.join(dir, 'interrupted')), modelOptions: { numClasses: 10, middleFlowBlocks: 2 } });
    await expect(other.fit({ resume: true })).rejects.toThrow(/is of xception .*not of this trainer's model/);
    other.dispose();
  });

  it('one training job per model at a time', async () => {
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 0 });
    const a = new Trainer({ ...options(path.join(dir, 'a')), model, epochs: 1 });
    const b = new Trainer({ ...options(path.join(dir, 'b')), model, epochs: 1 });
    const running = a.fit();
    await new Promise((r) => setTimeout(r, 300));
    // The model belongs to a's job: b is refused before it touches it.
    await expect(b.fit()).rejects.toThrow(/refused while Trainer\.fit\(\) trains this model/);
    await running;
    model.dispose();
  });
});

describe('memory', () => {
  it('does not grow across epochs', async () => {
    const trainer = new Trainer({
      model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 0 }, dataset: 'synthetic',
      synthetic: { trainSize: 64, valSize: 16, testSize: 16 }, epochs: 6, batchSize: 16, preprocessing: small,
      outDir: path.join(dir, 'memory'), device: 'cpu',
    });
    const rss: number[] = [];
    trainer.on('epoch', () => rss.push(process.memoryUsage().rss));
    await trainer.fit();
    trainer.dispose();
    expect(rss).toHaveLength(6);
    // After epoch 5 within a few percent of after epoch 2.
    expect(rss[4] / rss[1]).toBeLessThan(1.05);
  });
});

describe('precision and memory format on the CPU', () => {
  const tiny = (outDir: string, extra: Partial<TrainerOptions>): TrainerOptions => ({
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 0 }, dataset: 'synthetic',
    synthetic: { trainSize: 48, valSize: 16, testSize: 16, difficulty: 'easy' }, epochs: 1, batchSize: 16,
    preprocessing: small, outDir, device: 'cpu', seed: 1, ...extra,
  });

  it('bf16 autocast trains with finite losses; fp16 on the CPU is refused', async () => {
    // bf16 is emulated on most CPUs (slow, as in PyTorch): keep this run tiny.
    const trainer = new Trainer(tiny(path.join(dir, 'bf16'), {
      amp: 'bf16', batchSize: 8, synthetic: { trainSize: 16, valSize: 8, testSize: 8, difficulty: 'easy' },
    }));
    const history = await trainer.fit();
    trainer.dispose();
    expect(Number.isFinite(history.epochs[0].trainLoss)).toBe(true);
    expect(Number.isFinite(history.epochs[0].valLoss)).toBe(true);
    await expect(new Trainer(tiny(path.join(dir, 'fp16'), { amp: 'fp16' })).fit()).rejects.toThrow(/fp16 mixed precision needs CUDA/);
  });

  it('channels_last gives the same training results as the default layout', async () => {
    const plain = new Trainer(tiny(path.join(dir, 'nchw'), { channelsLast: false }));
    const a = (await plain.fit()).epochs[0];
    plain.dispose();
    const last = new Trainer(tiny(path.join(dir, 'nhwc'), { channelsLast: true }));
    const b = (await last.fit()).epochs[0];
    last.dispose();
    expect(Math.abs(b.trainLoss - a.trainLoss) / a.trainLoss).toBeLessThan(1e-3);
    expect(Math.abs(b.valLoss - a.valLoss) / a.valLoss).toBeLessThan(1e-3);
  });
});
