// The synthetic dataset: determinism, balance, statistics that show it is learnable but not trivial,
// and its CIFAR-10 binary and archive writers. Also the seeded PRNG it is built on.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tar from 'tar';
import { CIFAR10_FOLDER, readCifar10Folder } from '../lib/datasets/cifar10';
import {
  createSyntheticDataset, generateSyntheticImages, SYNTHETIC_CLASS_NAMES, writeCifar10Archive, writeCifar10Binary,
} from '../lib/datasets/synthetic';
import { ImageSet } from '../lib/datasets/types';
import { createRng, permutation } from '../lib/random';

// Global lookups (Math) are slow in jest's vm context; per-pixel loops use a local.
const { abs } = Math;

const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

describe('createRng / permutation', () => {
  test('createRng is uniform in [0, 1) and determined by the seed', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const xs = Array.from({ length: 10_000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 10_000 }, () => b()));
    expect(xs.slice(0, 10)).not.toEqual(Array.from({ length: 10 }, () => c()));
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    const deciles = new Array(10).fill(0);
    xs.forEach((x) => deciles[Math.floor(x * 10)]++);
    expect(Math.min(...deciles)).toBeGreaterThan(850);
  });

  test('permutation holds each index once and depends on the seed only', () => {
    const p = permutation(1000, 1);
    expect(Array.from(p).sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(Array.from(permutation(1000, 1))).toEqual(Array.from(p));
    expect(Array.from(permutation(1000, 2))).not.toEqual(Array.from(p));
    expect(Array.from(p).filter((v, i) => v === i).length).toBeLessThan(10); // ~1 fixed point expected
    expect(Array.from(permutation(0, 1))).toEqual([]);
    expect(Array.from(permutation(1, 1))).toEqual([0]);
    expect(() => permutation(-1, 0)).toThrow(/permutation size/);
  });
});

/** Per class: the images' mean brightness, and their mean absolute horizontal and vertical differences. */
function classStats(set: ImageSet): Array<{ n: number; mean: number; dx: number; dy: number }> {
  const stats = Array.from({ length: 10 }, () => ({ n: 0, mean: 0, dx: 0, dy: 0 }));
  for (let i = 0; i < set.count; i++) {
    const img = set.images.subarray(i * 3072, (i + 1) * 3072);
    let sum = 0;
    let dx = 0;
    let dy = 0;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const v = img[c * 1024 + y * 32 + x];
          sum += v;
          if (x < 31) dx += abs(img[c * 1024 + y * 32 + x + 1] - v);
          if (y < 31) dy += abs(img[c * 1024 + (y + 1) * 32 + x] - v);
        }
      }
    }
    const s = stats[set.labels[i]];
    s.n++;
    s.mean += sum / 3072;
    s.dx += dx / (3 * 32 * 31);
    s.dy += dy / (3 * 32 * 31);
  }
  for (const s of stats) {
    s.mean /= s.n;
    s.dx /= s.n;
    s.dy /= s.n;
  }
  return stats;
}

describe('generateSyntheticImages', () => {
  const set = generateSyntheticImages(2000, 7);

  test('shape and size as CIFAR-10 stores images', () => {
    expect([set.count, set.channels, set.height, set.width]).toEqual([2000, 3, 32, 32]);
    expect(set.images.length).toBe(2000 * 3072);
    expect(set.labels.length).toBe(2000);
  });

  test('the same seed gives the same images; another seed other images', () => {
    const again = generateSyntheticImages(2000, 7);
    expect(same(again.images, set.images)).toBe(true);
    expect(same(again.labels, set.labels)).toBe(true);
    const other = generateSyntheticImages(2000, 8);
    expect(same(other.images, set.images)).toBe(false);
    expect(same(other.labels, set.labels)).toBe(false);
  });

  test('all 10 classes, balanced, in random order', () => {
    const counts = new Array(10).fill(0);
    set.labels.forEach((l) => counts[l]++);
    expect(counts).toEqual(new Array(10).fill(200));
    expect(Array.from(set.labels.subarray(0, 20))).not.toEqual(Array.from({ length: 20 }, (_, i) => i % 10));
    const odd = generateSyntheticImages(37, 1);
    const oddCounts = new Array(10).fill(0);
    odd.labels.forEach((l) => oddCounts[l]++);
    expect(oddCounts.every((n) => n === 3 || n === 4)).toBe(true);
    expect(generateSyntheticImages(0, 1).count).toBe(0);
    expect(() => generateSyntheticImages(-1, 1)).toThrow(/count must be a non-negative integer/);
  });

  test('colour does not give the class away: every class has about the same mean brightness', () => {
    for (const s of classStats(set)) expect(Math.abs(s.mean - 127.5)).toBeLessThan(15);
  });

  test('structure does: stripe directions and texture versus shape differ per class', () => {
    const stats = classStats(set);
    const [horizontal, vertical] = [stats[5], stats[6]];
    // Horizontal stripes change along y, vertical stripes along x.
    expect(horizontal.dy).toBeGreaterThan(2 * horizontal.dx);
    expect(vertical.dx).toBeGreaterThan(2 * vertical.dy);
    // Textures (stripes, checkerboard, dots) have more edges than single shapes.
    const edges = stats.map((s) => s.dx + s.dy);
    expect(Math.min(...edges.slice(5))).toBeGreaterThan(Math.max(...edges.slice(0, 5)));
    // So the per-class mean statistics are different class to class.
    const keys = new Set(stats.map((s) => `${Math.round(s.dx)}:${Math.round(s.dy)}`));
    expect(keys.size).toBeGreaterThanOrEqual(6);
  });

  test('images of one class differ from each other: position, scale, colours and noise', () => {
    for (let label = 0; label < 10; label++) {
      const idx = Array.from(set.labels.keys()).filter((i) => set.labels[i] === label).slice(0, 20);
      const images = idx.map((i) => set.images.subarray(i * 3072, (i + 1) * 3072));
      for (let k = 1; k < images.length; k++) {
        let differing = 0;
        for (let p = 0; p < 3072; p++) if (abs(images[k][p] - images[0][p]) > 10) differing++;
        expect(differing).toBeGreaterThan(3072 / 4);
      }
    }
  });

  test('the full range of values is used, with pixel noise (no flat areas)', () => {
    let min = 255;
    let max = 0;
    for (const v of set.images) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
    expect(min).toBe(0);
    expect(max).toBe(255);
    // A 4×4 corner patch of one channel is never a single value.
    for (let i = 0; i < 50; i++) {
      const values = new Set<number>();
      for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) values.add(set.images[i * 3072 + y * 32 + x]);
      expect(values.size).toBeGreaterThan(1);
    }
  });

  test('fast: 5,000 images well within a second or two', () => {
    const started = Date.now();
    generateSyntheticImages(5000, 3);
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe('createSyntheticDataset', () => {
  test('defaults: 5,000 / 1,000 / 1,000 images named synthetic, with class names', () => {
    const d = createSyntheticDataset();
    expect(d.name).toBe('synthetic');
    expect(d.classNames).toEqual(SYNTHETIC_CLASS_NAMES);
    expect(d.classNames).toHaveLength(10);
    expect([d.train.count, d.val.count, d.test.count]).toEqual([5000, 1000, 1000]);
  });

  test('sizes and seed are options; the splits are independent draws; same seed same data', () => {
    const a = createSyntheticDataset({ trainSize: 300, valSize: 50, testSize: 40, seed: 5 });
    expect([a.train.count, a.val.count, a.test.count]).toEqual([300, 50, 40]);
    const b = createSyntheticDataset({ trainSize: 300, valSize: 50, testSize: 40, seed: 5 });
    expect(same(a.train.images, b.train.images) && same(a.val.images, b.val.images) && same(a.test.images, b.test.images)).toBe(true);
    const c = createSyntheticDataset({ trainSize: 300, valSize: 50, testSize: 40, seed: 6 });
    expect(same(a.train.images, c.train.images)).toBe(false);
    // Validation is not a prefix of train, nor test of validation.
    expect(same(a.val.images, a.train.images.subarray(0, a.val.images.length))).toBe(false);
    expect(same(a.test.images, a.val.images.subarray(0, a.test.images.length))).toBe(false);
  });
});

describe('writing CIFAR-10 files', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-synthetic-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const data = { train: generateSyntheticImages(23, 1), test: generateSyntheticImages(9, 2), classNames: [...SYNTHETIC_CLASS_NAMES] };

  test('writeCifar10Binary writes the exact layout: records of label + CHW image, meta with the names', async () => {
    const folder = await writeCifar10Binary(tmp, data);
    expect(folder).toBe(path.join(tmp, CIFAR10_FOLDER));
    const first = fs.readFileSync(path.join(folder, 'data_batch_1.bin'));
    expect(first.length).toBe(4 * 3073); // 23 over 5 files: 4, 5, 4, 5, 5
    expect(first[0]).toBe(data.train.labels[0]);
    expect(same(first.subarray(1, 3073), data.train.images.subarray(0, 3072))).toBe(true);
    expect(first[3073]).toBe(data.train.labels[1]);
    expect(fs.readFileSync(path.join(folder, 'batches.meta.txt'), 'utf8')).toBe(`${SYNTHETIC_CLASS_NAMES.join('\n')}\n\n`);
    const two = await writeCifar10Binary(path.join(tmp, 'two'), data, { trainFiles: 2 });
    expect(fs.readdirSync(two).sort()).toEqual(['batches.meta.txt', 'data_batch_1.bin', 'data_batch_2.bin', 'test_batch.bin']);
  });

  test('writeCifar10Binary refuses what CIFAR-10 cannot hold', async () => {
    const wrongShape = { ...data.train, width: 31 };
    await expect(writeCifar10Binary(tmp, { ...data, train: wrongShape })).rejects.toThrow(/train set: CIFAR-10 files hold 3×32×32 images, got 3×32×31/);
    const labels = Uint8Array.from(data.test.labels);
    labels[4] = 10;
    await expect(writeCifar10Binary(tmp, { ...data, test: { ...data.test, labels } })).rejects.toThrow(/test set: image 4 has label 10/);
    await expect(writeCifar10Binary(tmp, { ...data, classNames: ['a'] })).rejects.toThrow(/10 non-empty one-line class names/);
    await expect(writeCifar10Binary(tmp, data, { trainFiles: 0 })).rejects.toThrow(/trainFiles must be an integer >= 1/);
  });

  test('writeCifar10Archive writes a tar.gz of cifar-10-batches-bin/ and returns its MD5', async () => {
    const file = path.join(tmp, 'out', 'cifar-10-binary.tar.gz');
    const { md5 } = await writeCifar10Archive(file, data);
    expect(md5).toBe(crypto.createHash('md5').update(fs.readFileSync(file)).digest('hex'));
    expect(fs.readdirSync(path.dirname(file))).toEqual(['cifar-10-binary.tar.gz']); // no temporary files left
    const entries: string[] = [];
    await tar.t({ file, onReadEntry: (e) => { entries.push(e.path); } });
    expect(entries.every((e) => e.startsWith(`${CIFAR10_FOLDER}/`))).toBe(true);
    expect(entries).toContain(`${CIFAR10_FOLDER}/test_batch.bin`);
    expect(fs.readFileSync(file).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b])); // gzip

    const out = path.join(tmp, 'x');
    fs.mkdirSync(out);
    await tar.x({ file, cwd: out });
    const read = await readCifar10Folder(path.join(out, CIFAR10_FOLDER));
    expect(same(read.train.images, data.train.images) && same(read.train.labels, data.train.labels)).toBe(true);
    expect(same(read.test.images, data.test.images) && same(read.test.labels, data.test.labels)).toBe(true);
  });
});
