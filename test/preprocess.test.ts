// The native data pipeline against torchvision's tensor transforms on the same uint8 images, and
// proof that training batches are augmented while evaluation batches never are.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeviceDataset } from '../lib/datasets/device-dataset';
import type { ImageSet } from '../lib/datasets/types';
import { writeSafetensors } from '../lib/safetensors';
import { PYTHON, requirePythonTorch } from './helpers/python';
import { readTensor } from './helpers/tensors';

const TOLERANCE = 1e-5;

/** Deterministic noise images with some structure (a gradient), so resizing matters. */
function makeImages(count: number, size = 32): ImageSet {
  const images = new Uint8Array(count * 3 * size * size);
  let state = 12345;
  for (let i = 0; i < images.length; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const x = i % size;
    images[i] = ((state >>> 24) + x * 4) & 0xff;
  }
  const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
  return { images, labels, count, channels: 3, height: size, width: size };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-pre-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** torchvision's eval and train (at the given offsets and flips) outputs for the images. */
async function torchvisionReference(set: ImageSet, offsets: Int32Array, flips: Uint8Array, sizes: { resize: number; evalResize: number; crop: number }) {
  requirePythonTorch();
  const input = path.join(dir, `in-${sizes.resize}-${sizes.crop}-${Math.random()}.safetensors`);
  const out = path.join(dir, `out-${sizes.resize}-${sizes.crop}-${Math.random()}.safetensors`);
  await writeSafetensors(input, [
    ['images', { dtype: 'U8', shape: [set.count, 3, set.height, set.width], data: set.images }],
    ['offsets', { dtype: 'I32', shape: [set.count, 2], data: new Uint8Array(offsets.buffer) }],
    ['flips', { dtype: 'U8', shape: [set.count], data: flips }],
  ]);
  const r = spawnSync(PYTHON, [
    path.join(__dirname, 'oracle', 'preprocess.py'), '--input', input, '--out', out,
    '--resize', String(sizes.resize), '--eval-resize', String(sizes.evalResize), '--crop', String(sizes.crop),
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return { eval: await readTensor(out, 'eval'), train: await readTensor(out, 'train') };
}

describe.each([
  { label: 'the reference setup (32 -> 320, crop 299; eval 32 -> 299)', resize: 320, evalResize: 299, crop: 299, strategy: 'per-image' as const },
  { label: 'the reference setup, whole-batch ops (the GPU path)', resize: 320, evalResize: 299, crop: 299, strategy: 'batched' as const },
  { label: 'a small setup (32 -> 40, crop 36; eval 32 -> 38, center crop 36)', resize: 40, evalResize: 38, crop: 36, strategy: 'auto' as const },
  { label: 'a small setup, whole-batch ops', resize: 40, evalResize: 38, crop: 36, strategy: 'batched' as const },
])('$label', (sizes) => {
  const set = makeImages(6);
  const dataset = DeviceDataset.fromImageSet(set, 'cpu');
  const indices = [0, 1, 2, 3, 4, 5];
  const limit = sizes.resize - sizes.crop;
  const offsets = Int32Array.from([0, 0, limit, limit, 0, limit, limit, 0, 3, 7 % (limit + 1), 1, 2]);
  const flips = Uint8Array.from([0, 1, 0, 1, 1, 0]);
  let reference: Awaited<ReturnType<typeof torchvisionReference>>;
  beforeAll(async () => {
    reference = await torchvisionReference(set, offsets, flips, sizes);
  });

  it(`evaluation batches equal torchvision's Resize -> CenterCrop -> Normalize (<= ${TOLERANCE})`, async () => {
    const batch = await dataset.evalBatch(indices, sizes);
    expect(batch.shape).toEqual([6, 3, sizes.crop, sizes.crop]);
    expect(Array.from(batch.labels)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(batch.offsets).toBeUndefined();
    expect(maxAbsDiff(batch.data, reference.eval.data)).toBeLessThanOrEqual(TOLERANCE);
  });

  it(`training batches at known offsets and flips equal torchvision's resize -> crop -> hflip (<= ${TOLERANCE})`, async () => {
    const batch = await dataset.trainBatch(indices, sizes, { offsets, flips });
    expect(Array.from(batch.offsets!)).toEqual(Array.from(offsets));
    expect(maxAbsDiff(batch.data, reference.train.data)).toBeLessThanOrEqual(TOLERANCE);
    // Sanity of the check itself: without the flips the images differ.
    const unflipped = await dataset.trainBatch(indices, sizes, { offsets, flips: new Uint8Array(6) });
    expect(maxAbsDiff(unflipped.data, reference.train.data)).toBeGreaterThan(0.1);
  });
});

describe('augmentation applies to training batches only', () => {
  const set = makeImages(64);
  const dataset = DeviceDataset.fromImageSet(set, 'cpu');
  const indices = Array.from({ length: 64 }, (_, i) => i);
  const sizes = { resize: 40, crop: 32, evalResize: 32 };

  it('evaluation batches are deterministic and unaugmented', async () => {
    const a = await dataset.evalBatch(indices, sizes);
    const b = await dataset.evalBatch(indices, sizes);
    expect(maxAbsDiff(a.data, b.data)).toBe(0);
    // evalResize equals the image size here, so the batch is the normalised images themselves.
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    const expected = Float32Array.from(set.images, (v, i) => (v / 255 - mean[Math.floor(i / 1024) % 3]) / std[Math.floor(i / 1024) % 3]);
    expect(maxAbsDiff(a.data, expected)).toBeLessThanOrEqual(TOLERANCE);
  });

  it('training batches draw random crops and flips, reproducibly per seed', async () => {
    const a = await dataset.trainBatch(indices, sizes, { seed: 1 });
    const again = await dataset.trainBatch(indices, sizes, { seed: 1 });
    const other = await dataset.trainBatch(indices, sizes, { seed: 2 });
    expect(maxAbsDiff(a.data, again.data)).toBe(0);
    expect(maxAbsDiff(a.data, other.data)).toBeGreaterThan(0.1);
    const flips = Array.from(a.flips!);
    expect(flips.filter((f) => f === 1).length).toBeGreaterThan(16);  // p = 0.5 of 64
    expect(flips.filter((f) => f === 0).length).toBeGreaterThan(16);
    const tops = new Set(Array.from(a.offsets!).filter((_, i) => i % 2 === 0));
    expect(tops.size).toBeGreaterThan(4);
    for (const o of a.offsets!) expect(o >= 0 && o <= 8).toBe(true);
    const evaluation = await dataset.evalBatch(indices, sizes);
    expect(maxAbsDiff(a.data, evaluation.data)).toBeGreaterThan(0.1);
  });

  it('flip: false never flips', async () => {
    const a = await dataset.trainBatch(indices, { ...sizes, flip: false }, { seed: 3 });
    expect(Array.from(a.flips!).every((f) => f === 0)).toBe(true);
  });
});

describe('bad input', () => {
  const dataset = DeviceDataset.fromImageSet(makeImages(4), 'cpu');

  it('names the problem', async () => {
    await expect(dataset.evalBatch([0, 4])).rejects.toThrow(/index 4 is outside the dataset \(size 4\)/);
    await expect(dataset.evalBatch([0], { crop: 299, evalResize: 100 })).rejects.toThrow(/crop \(299\) cannot be larger than the evaluation resize \(100\)/);
    await expect(dataset.trainBatch([0], { crop: 64, resize: 32 })).rejects.toThrow(/crop \(64\) cannot be larger than the training resize \(32\)/);
    await expect(dataset.trainBatch([0], { crop: 30, resize: 32 }, { offsets: Int32Array.from([0, 3]), flips: new Uint8Array(1) }))
      .rejects.toThrow(/crop offsets must lie in \[0, 2\]/);
    await expect(dataset.evalBatch([0], { std: [0, 1, 1] })).rejects.toThrow(/std must hold three positive numbers/);
    expect(() => DeviceDataset.fromImageSet({ ...makeImages(2), count: 3 }, 'cpu')).toThrow(/does not match their shape/);
  });
});
