// GPU checks (`npm run test:gpu`, which runs them only where libtorch sees a CUDA GPU): the models,
// the preprocessing, the fused optimizer and GradScaler kernels and the training loop on CUDA,
// against the CPU path and against PyTorch on the same GPU.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createModel, GradScaler, Xception } from '../../lib';
import { DeviceDataset } from '../../lib/datasets/device-dataset';
import type { ImageSet } from '../../lib/datasets/types';
import { native } from '../../lib/native';
import { readSafetensors, float32Values } from '../../lib/safetensors';
import { Trainer, TrainerOptions } from '../../lib/trainer';
import { adamStepBothWays, randomTensor, scalerSequenceBothWays } from '../helpers/optim-oracle';
import { relativeError } from '../helpers/tensors';

jest.setTimeout(600_000);

if (!native().info().cudaAvailable) {
  throw new Error('these tests need a CUDA GPU; run them with `npm run test:gpu`, which says so and stops where there is none');
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-gpu-'));
  // True float32 arithmetic for the parity checks (PyTorch's default lets cuDNN use TF32).
  native().setAllowTF32(false);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function images(count: number, size = 32): ImageSet {
  const data = new Uint8Array(count * 3 * size * size);
  let state = 777;
  for (let i = 0; i < data.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    data[i] = ((state >>> 24) + (i % size) * 4) & 0xff;
  }
  return { images: data, labels: Uint8Array.from({ length: count }, (_, i) => i % 10), count, channels: 3, height: size, width: size };
}

const sameBytes = (a: Float32Array, b: Float32Array) =>
  Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const isBuffer = (name: string) => /running_(mean|var)$|num_batches_tracked$/.test(name);

async function parameters(model: { saveSafetensors(p: string): Promise<void> }, name: string): Promise<Map<string, Float32Array>> {
  const file = path.join(dir, `${name}.safetensors`);
  await model.saveSafetensors(file);
  const out = new Map<string, Float32Array>();
  for (const [key, t] of (await readSafetensors(file)).tensors) if (!isBuffer(key)) out.set(key, float32Values(t));
  return out;
}

describe('forward passes on the GPU equal the CPU (fp32, relative error <= 1e-3)', () => {
  it.each([
    ['xception', {}],
    ['inception_v3', {}],
  ] as const)('%s at 299x299', async (name, options) => {
    native().manualSeed(11);
    const cpu = createModel(name, { numClasses: 10, ...options }).eval();
    const file = path.join(dir, `${name}-weights.safetensors`);
    await cpu.saveSafetensors(file);
    const gpu = createModel(name, { numClasses: 10, ...options });
    await gpu.loadSafetensors(file);
    gpu.to('cuda').eval();
    expect(gpu.device).toMatch(/^cuda/);
    const x = randomTensor([2, 3, 299, 299], 5);
    const expected = await cpu.forward(x);
    const actual = await gpu.forward(x);
    expect(actual.shape).toEqual([2, 10]);
    const error = relativeError(actual.data, expected.data);
    console.log(`${name}: GPU vs CPU logits, relative error ${error.toExponential(2)}`);
    expect(error).toBeLessThanOrEqual(1e-3);
    cpu.dispose();
    gpu.dispose();
  });
});

describe('the batched preprocessing on the GPU equals the CPU path', () => {
  // Resize produces floats that are rounded to 0..255 as torchvision does for uint8 images; a value
  // within float error of .5 may round the other way on another device: at most one step (1/255/std).
  const ONE_STEP = 1 / 255 / 0.224 + 1e-4;
  const set = images(16);
  const indices = Array.from({ length: 16 }, (_, i) => i);
  const offsets = Int32Array.from(indices.flatMap((i) => [(i * 7) % 22, (i * 5) % 22]));
  const flips = Uint8Array.from(indices, (i) => i % 2);

  it.each(['eval', 'train'] as const)('%s batches at the reference sizes (32 -> 320/299, crop 299)', async (kind) => {
    const cpu = DeviceDataset.fromImageSet(set, 'cpu');
    const gpu = DeviceDataset.fromImageSet(set, 'cuda');
    const [a, b] = kind === 'eval'
      ? [await cpu.evalBatch(indices), await gpu.evalBatch(indices)]
      : [await cpu.trainBatch(indices, {}, { offsets, flips }), await gpu.trainBatch(indices, {}, { offsets, flips })];
    expect(b.shape).toEqual([16, 3, 299, 299]);
    let max = 0;
    let differing = 0;
    for (let i = 0; i < a.data.length; i++) {
      const d = Math.abs(a.data[i] - b.data[i]);
      max = Math.max(max, d);
      if (d > 1e-5) differing++;
    }
    console.log(`${kind}: max difference ${max.toExponential(2)}, ${differing} of ${a.data.length} values differ by more than 1e-5`);
    expect(max).toBeLessThanOrEqual(ONE_STEP);
    expect(differing / a.data.length).toBeLessThanOrEqual(1e-3);
  });
});

const SHAPES = [[64, 32, 3, 3], [1000], [10, 2048]];

describe('fused Adam and the GradScaler kernels on CUDA against PyTorch on the same GPU', () => {
  it.each([['Adam', false], ['AdamW', true]] as const)('%s: one fused step equals torch.optim (fused=True) within 1e-6', async (_, adamw) => {
    const { before, ours, reference } = await adamStepBothWays(dir, { device: 'cuda', adamw, weightDecay: 1e-2, steps: 5, shapes: SHAPES });
    expect(ours.fused).toBe(native().info().torchVersionMajor >= 2);
    expect(ours.steps).toBe(6);
    for (let i = 0; i < SHAPES.length; i++) {
      expect(relativeError(ours.params[i].data, float32Values(reference.get(`p${i}`)!))).toBeLessThanOrEqual(1e-6);
      expect(relativeError(ours.expAvgSq[i].data, float32Values(reference.get(`v${i}`)!))).toBeLessThanOrEqual(1e-6);
      expect(relativeError(ours.params[i].data, before[i].data)).toBeGreaterThan(1e-4);
    }
  });

  it("a scripted overflow sequence gives torch.amp.GradScaler('cuda')'s scales, skips and weights", async () => {
    const r = await scalerSequenceBothWays(dir, 'cuda', SHAPES);
    expect(r.ours).toEqual(r.reference);
    expect(r.skippedSteps).toBe(3);
    for (let i = 0; i < SHAPES.length; i++) expect(relativeError(r.params[i].data, r.referenceParams[i])).toBeLessThanOrEqual(1e-5);
  });
});

function trainerOptions(extra: Partial<TrainerOptions>): TrainerOptions {
  return {
    model: 'xception', dataset: 'synthetic', device: 'cuda', seed: 1, batchSize: 32,
    synthetic: { trainSize: 256, valSize: 64, testSize: 64, difficulty: 'easy' },
    outDir: path.join(dir, `run-${Math.random().toString(36).slice(2)}`), ...extra,
  };
}

describe('training on the GPU', () => {
  it('fp16 autocast + GradScaler at 299x299 with the reference preprocessing learns (Xception)', async () => {
    const trainer = new Trainer(trainerOptions({
      synthetic: { trainSize: 1024, valSize: 256, testSize: 256, difficulty: 'easy' }, epochs: 3, batchSize: 64, amp: 'fp16',
    }));
    const history = await trainer.fit();
    for (const e of history.epochs) console.log(`xception fp16 epoch ${e.epoch}: train loss ${e.trainLoss.toFixed(3)}, val ${e.valAccuracy.toFixed(3)}, ${e.imagesPerSecond.toFixed(0)} img/s, scale ${e.lossScale}`);
    expect(history.epochs[2].trainLoss).toBeLessThan(history.epochs[0].trainLoss);
    expect(Math.max(...history.epochs.map((e) => e.valAccuracy))).toBeGreaterThanOrEqual(0.9);
    trainer.dispose();
  });

  it('Inception V3 with its aux head learns at 299x299 in fp16', async () => {
    const trainer = new Trainer(trainerOptions({
      model: 'inception_v3', synthetic: { trainSize: 1024, valSize: 256, testSize: 256, difficulty: 'easy' }, epochs: 3, batchSize: 64, amp: 'fp16',
    }));
    const history = await trainer.fit();
    for (const e of history.epochs) console.log(`inception fp16 epoch ${e.epoch}: train loss ${e.trainLoss.toFixed(3)}, val ${e.valAccuracy.toFixed(3)}, ${e.imagesPerSecond.toFixed(0)} img/s`);
    expect(history.epochs[2].trainLoss).toBeLessThan(history.epochs[0].trainLoss);
    expect(Math.max(...history.epochs.map((e) => e.valAccuracy))).toBeGreaterThanOrEqual(0.8);
    trainer.dispose();
  });

  it('an fp16 overflow skips the optimizer step on the device and backs the scale off', async () => {
    native().manualSeed(3);
    const model = new Xception({ numClasses: 10 });
    const before = await parameters(model, 'overflow-before');
    // 2^60 times the loss overflows fp16 in the backward pass: both steps of the epoch must be skipped.
    const trainer = new Trainer(trainerOptions({
      model, trainLimit: 64, epochs: 1, batchSize: 32, amp: 'fp16', gradScaler: new GradScaler({ initScale: 2 ** 60 }),
      preprocessing: { resize: 40, evalResize: 32, crop: 32 },
    }));
    const history = await trainer.fit();
    expect(history.epochs[0].skippedSteps).toBe(2);
    expect(history.epochs[0].lossScale).toBe(2 ** 58);
    const after = await parameters(model, 'overflow-after');
    for (const [key, value] of before) expect({ key, same: sameBytes(value, after.get(key)!) }).toEqual({ key, same: true });
    trainer.dispose();
  });

  it('bf16 autocast trains without a loss scaler', async () => {
    const trainer = new Trainer(trainerOptions({ epochs: 2, amp: 'bf16', preprocessing: { resize: 72, evalResize: 64, crop: 64 } }));
    const history = await trainer.fit();
    expect(history.epochs.every((e) => e.lossScale === 1 && e.skippedSteps === 0)).toBe(true);
    expect(history.epochs.every((e) => Number.isFinite(e.trainLoss))).toBe(true);
    expect(history.epochs[1].trainLoss).toBeLessThan(history.epochs[0].trainLoss);
    trainer.dispose();
  });

  it('fusedAdam: false falls back to the per-tensor Adam and trains to the same weights (fp32)', async () => {
    const run = async (fusedAdam: boolean) => {
      native().manualSeed(23);
      const model = new Xception({ numClasses: 10, middleFlowBlocks: 2 });
      const trainer = new Trainer(trainerOptions({
        model, epochs: 1, amp: 'off', fusedAdam, preprocessing: { resize: 72, evalResize: 64, crop: 64 },
      }));
      await trainer.fit();
      const metrics = JSON.parse(fs.readFileSync(path.join(trainer.outDir, 'metrics.json'), 'utf8'));
      const weights = await parameters(model, `fused-${fusedAdam}`);
      trainer.dispose();
      model.dispose();
      return { ranFused: metrics.runtime.fusedAdam as boolean, weights };
    };
    const fused = await run(true);
    const single = await run(false);
    expect(fused.ranFused).toBe(native().info().torchVersionMajor >= 2);
    expect(single.ranFused).toBe(false);
    for (const [key, value] of fused.weights) expect({ key, ok: relativeError(single.weights.get(key)!, value) <= 1e-3 }).toEqual({ key, ok: true });
  });

  it('channels_last + cuDNN benchmark give the results of the plain path (fp32)', async () => {
    const run = async (fast: boolean) => {
      native().manualSeed(21);
      const model = new Xception({ numClasses: 10 });
      const trainer = new Trainer(trainerOptions({
        model, epochs: 1, amp: 'off', channelsLast: fast, cudnnBenchmark: fast, preprocessing: { resize: 72, evalResize: 64, crop: 64 },
      }));
      const history = await trainer.fit();
      const weights = await parameters(model, `layout-${fast}`);
      trainer.dispose();
      return { loss: history.epochs[0].trainLoss, val: history.epochs[0].valLoss, weights };
    };
    const plain = await run(false);
    const fast = await run(true);
    console.log(`plain loss ${plain.loss}, channels_last ${fast.loss}; val ${plain.val} / ${fast.val}`);
    expect(Math.abs(fast.loss - plain.loss) / plain.loss).toBeLessThanOrEqual(1e-3);
    expect(Math.abs(fast.val - plain.val) / plain.val).toBeLessThanOrEqual(1e-2);
    for (const [key, value] of plain.weights) expect({ key, ok: relativeError(fast.weights.get(key)!, value) <= 1e-2 }).toEqual({ key, ok: true });
  });
});
