/**
 * A synthetic stand-in for CIFAR-10: seeded, procedurally drawn 32×32 RGB images in 10 classes.
 *
 * Each class is a shape or a texture (a disc, a ring, stripes, a checkerboard, …) drawn at a random
 * position, scale and angle, in a random foreground colour over a random background with a gradient,
 * plus pixel noise. Colour says nothing about the class, so a network has to learn shape; a small
 * CNN learns it in minutes, a linear model on pixels does poorly.
 *
 * The data can also be written in CIFAR-10's binary layout (and as its .tar.gz), so the real
 * parser and download path run on it in tests and mirrors.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as tar from 'tar';
import { createRng } from '../random';
import {
  CIFAR10_CLASSES, CIFAR10_FOLDER, CIFAR10_IMAGE_BYTES, CIFAR10_META_FILE, CIFAR10_RECORD_BYTES, CIFAR10_TEST_FILE,
} from './cifar10';
import { DatasetSplits, ImageSet } from './types';

export const SYNTHETIC_CLASS_NAMES: readonly string[] = [
  'disc', 'ring', 'square', 'triangle', 'cross',
  'horizontal stripes', 'vertical stripes', 'checkerboard', 'diagonal stripes', 'dots',
];

// Math's functions as module constants: looking up the global \`Math\` on every pixel is slow inside
// a vm context (jest runs modules in one), and costs nothing to avoid.
const { abs, cos, floor, hypot, imul, max, min, sin, sqrt, trunc, PI } = Math;
const INFINITY = Number.POSITIVE_INFINITY;

const SIZE = 32;
const PLANE = SIZE * SIZE;

type Rng = () => number;

const between = (rng: Rng, lo: number, hi: number): number => lo + (hi - lo) * rng();

// Scratch planes for one image: pixel offsets from the shape's centre (DX, DY), the same rotated by
// the shape's angle (U, V), and how far inside the shape each pixel centre is, in pixels (S).
const DX = new Float64Array(PLANE);
const DY = new Float64Array(PLANE);
const U = new Float64Array(PLANE);
const V = new Float64Array(PLANE);
const S = new Float64Array(PLANE);

/** Stripes across the direction `angle`: a soft square wave of random period and phase, into S. */
function stripes(rng: Rng, angle: number): void {
  const period = between(rng, 4, 9);
  const phase = between(rng, 0, 2 * PI);
  const k = (2 * PI) / period;
  const gain = period / (2 * PI);
  const nx = cos(angle);
  const ny = sin(angle);
  for (let i = 0; i < PLANE; i++) S[i] = gain * sin(k * (DX[i] * nx + DY[i] * ny) + phase);
}

/**
 * Fills S for class `label` around the centre that DX/DY/U/V were computed for. Each class has its
 * own loop so that the per-pixel work stays monomorphic (fast). Returns whether it is a texture
 * (drawn in a patch) rather than a shape.
 */
function drawClass(label: number, rng: Rng, angle: number): boolean {
  const r = between(rng, 5, 12);
  const tilt = between(rng, -0.3, 0.3);
  switch (label) {
    case 0: // disc
      for (let i = 0; i < PLANE; i++) S[i] = r - sqrt(DX[i] * DX[i] + DY[i] * DY[i]);
      return false;
    case 1: { // ring
      const half = max(1, r * between(rng, 0.12, 0.22));
      for (let i = 0; i < PLANE; i++) S[i] = half - abs(sqrt(DX[i] * DX[i] + DY[i] * DY[i]) - r);
      return false;
    }
    case 2: { // square
      const h = r * 0.85;
      for (let i = 0; i < PLANE; i++) S[i] = h - max(abs(U[i]), abs(V[i]));
      return false;
    }
    case 3: { // triangle: equilateral, circumradius r, inradius r/2
      const a = [0, 1, 2].map((k) => angle + (2 * PI * k) / 3 + PI / 2);
      const [c0, c1, c2] = a.map(cos);
      const [s0, s1, s2] = a.map(sin);
      const h = r / 2;
      for (let i = 0; i < PLANE; i++) {
        const x = DX[i];
        const y = DY[i];
        S[i] = h - max(x * c0 + y * s0, x * c1 + y * s1, x * c2 + y * s2);
      }
      return false;
    }
    case 4: { // cross
      const w = max(1.2, r * between(rng, 0.2, 0.32));
      for (let i = 0; i < PLANE; i++) {
        const u = abs(U[i]);
        const v = abs(V[i]);
        S[i] = max(min(w - u, r - v), min(w - v, r - u));
      }
      return false;
    }
    case 5: // horizontal stripes: intensity changes along y
      stripes(rng, PI / 2 + tilt);
      return true;
    case 6: // vertical stripes: along x
      stripes(rng, tilt);
      return true;
    case 7: { // checkerboard
      const period = between(rng, 5, 10);
      const k = (2 * PI) / period;
      const gain = period / (2 * PI);
      const pu = between(rng, 0, 2 * PI);
      const pv = between(rng, 0, 2 * PI);
      for (let i = 0; i < PLANE; i++) {
        // Signed distance to the nearer grid line, positive on the "white" squares.
        const a = sin(k * U[i] + pu);
        const b = sin(k * V[i] + pv);
        const d = gain * min(abs(a), abs(b));
        S[i] = a * b >= 0 ? d : -d;
      }
      return true;
    }
    case 8: // diagonal stripes, either way
      stripes(rng, (rng() < 0.5 ? PI / 4 : -PI / 4) + tilt * 0.5);
      return true;
    case 9: { // dots on a grid
      const period = between(rng, 5.5, 9);
      const radius = period * between(rng, 0.22, 0.32);
      // Offsets keep the grid coordinates positive, so % gives the position inside a cell.
      const ou = between(rng, 0, period) + 64 * period;
      const ov = between(rng, 0, period) + 64 * period;
      const half = period / 2;
      for (let i = 0; i < PLANE; i++) {
        const a = ((U[i] + ou) % period) - half;
        const b = ((V[i] + ov) % period) - half;
        S[i] = radius - sqrt(a * a + b * b);
      }
      return true;
    }
    default:
      throw new Error(`no synthetic class ${label}`);
  }
}

function randomColour(rng: Rng): [number, number, number] {
  return [rng() * 255, rng() * 255, rng() * 255];
}

function clampByte(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : (v + 0.5) | 0;
}

// 'easy' images: each class in its own colour over a dark background, so the class shows in the
// colour as well as the shape (a quick check that a training loop learns at all).
const EASY_COLOURS: ReadonlyArray<[number, number, number]> = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
  [145, 30, 180], [70, 240, 240], [240, 50, 230], [250, 190, 212], [255, 255, 255],
];
const EASY_BACKGROUND: [number, number, number] = [30, 30, 30];

/** Draws one image of class `label` into `out` at `offset` (CHW, like CIFAR-10). */
function drawImage(label: number, rng: Rng, out: Uint8Array, offset: number, easy = false): void {
  let bg = randomColour(rng);
  let fg = randomColour(rng);
  // Keep the shape visible: foreground and background at least ~90 apart (Euclidean RGB).
  for (let tries = 0; tries < 20 && hypot(fg[0] - bg[0], fg[1] - bg[1], fg[2] - bg[2]) < 90; tries++) fg = randomColour(rng);
  let gx = between(rng, -1.2, 1.2);
  let gy = between(rng, -1.2, 1.2);
  let noise = between(rng, 3, 18);
  if (easy) {
    [bg, fg, gx, gy, noise] = [EASY_BACKGROUND, EASY_COLOURS[label], 0, 0, 3];
  }
  const cx = between(rng, 9, 23);
  const cy = between(rng, 9, 23);
  const angle = between(rng, 0, 2 * PI);
  const c = cos(angle);
  const s = sin(angle);
  for (let y = 0, i = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++, i++) {
      const dx = x + 0.5 - cx;
      const dy = y + 0.5 - cy;
      DX[i] = dx;
      DY[i] = dy;
      U[i] = dx * c + dy * s;
      V[i] = -dx * s + dy * c;
    }
  }
  const texture = drawClass(label, rng, angle);
  // Textures fill a patch of random size around the centre (the whole image at most).
  const hx = texture ? between(rng, 8, 17) : INFINITY;
  const hy = texture ? between(rng, 8, 17) : INFINITY;

  const [r0, g0, b0] = bg;
  const dr = fg[0] - r0;
  const dg = fg[1] - g0;
  const db = fg[2] - b0;
  // Pixel noise, uniform in ±noise: four 8-bit draws from each 32-bit random number.
  const step = (2 * noise) / 255;
  let bits = 0;
  for (let y = 0, i = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++, i++) {
      if ((i & 3) === 0) bits = (rng() * 4294967296) >>> 0;
      const jitter = ((bits >>> ((i & 3) << 3)) & 255) * step - noise;
      // Coverage by the shape, 0..1 with soft (one pixel) edges.
      let m = 0;
      if (abs(DX[i]) < hx && abs(DY[i]) < hy) {
        m = S[i] + 0.5;
        m = m < 0 ? 0 : m > 1 ? 1 : m;
      }
      const shade = gx * (x - 15.5) + gy * (y - 15.5) + jitter;
      const o = offset + i;
      out[o] = clampByte(r0 + dr * m + shade);
      out[o + PLANE] = clampByte(g0 + dg * m + shade);
      out[o + 2 * PLANE] = clampByte(b0 + db * m + shade);
    }
  }
}

/** `count` synthetic images with labels as balanced as `count` allows, in seeded random order. */
export function generateSyntheticImages(count: number, seed: number, difficulty: 'standard' | 'easy' = 'standard'): ImageSet {
  if (!Number.isSafeInteger(count) || count < 0) throw new Error(`count must be a non-negative integer, got ${count}`);
  const rng = createRng(seed);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) labels[i] = i % CIFAR10_CLASSES;
  for (let i = count - 1; i > 0; i--) {
    const j = floor(rng() * (i + 1));
    const t = labels[i];
    labels[i] = labels[j];
    labels[j] = t;
  }
  const images = new Uint8Array(count * CIFAR10_IMAGE_BYTES);
  const easy = difficulty === 'easy';
  for (let i = 0; i < count; i++) drawImage(labels[i], rng, images, i * CIFAR10_IMAGE_BYTES, easy);
  return { images, labels, count, channels: 3, height: SIZE, width: SIZE };
}

/** A seed for the `stream`-th independent part (train, val, test) of a dataset seeded with `seed`. */
function streamSeed(seed: number, stream: number): number {
  let h = (imul((trunc(seed) >>> 0) ^ 0x5bd1e995, 0x9e3779b1) + imul(stream + 1, 0x85ebca6b)) >>> 0;
  h = imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  return (h ^ (h >>> 15)) >>> 0;
}

export interface SyntheticDatasetOptions {
  /** Training images. Default 5,000. */
  trainSize?: number;
  /** Validation images. Default 1,000. */
  valSize?: number;
  /** Test images. Default 1,000. */
  testSize?: number;
  /** Everything is determined by this seed. Default 0. */
  seed?: number;
  /** 'easy': each class also has its own colour (learnable in a few steps). Default 'standard'. */
  difficulty?: 'standard' | 'easy';
}

/** The synthetic dataset as train / validation / test, each drawn independently from the seed. */
export function createSyntheticDataset(opts: SyntheticDatasetOptions = {}): DatasetSplits {
  const seed = opts.seed ?? 0;
  return {
    name: 'synthetic',
    classNames: [...SYNTHETIC_CLASS_NAMES],
    train: generateSyntheticImages(opts.trainSize ?? 5000, streamSeed(seed, 0), opts.difficulty),
    val: generateSyntheticImages(opts.valSize ?? 1000, streamSeed(seed, 1), opts.difficulty),
    test: generateSyntheticImages(opts.testSize ?? 1000, streamSeed(seed, 2), opts.difficulty),
  };
}

export interface Cifar10Data {
  train: ImageSet;
  test: ImageSet;
  classNames: readonly string[];
}

export interface WriteCifar10Options {
  /** How many `data_batch_N.bin` files the train set is spread over (as evenly as possible). Default 5. */
  trainFiles?: number;
}

function checkCifar10Shape(set: ImageSet, what: string): void {
  if (set.channels !== 3 || set.height !== 32 || set.width !== 32) {
    throw new Error(`${what}: CIFAR-10 files hold 3×32×32 images, got ${set.channels}×${set.height}×${set.width}`);
  }
  if (set.images.length < set.count * CIFAR10_IMAGE_BYTES || set.labels.length < set.count) {
    throw new Error(`${what}: ${set.count} images need ${set.count * CIFAR10_IMAGE_BYTES} image bytes and ${set.count} labels`);
  }
  for (let i = 0; i < set.count; i++) {
    if (set.labels[i] >= CIFAR10_CLASSES) throw new Error(`${what}: image ${i} has label ${set.labels[i]}; CIFAR-10 labels are 0 to 9`);
  }
}

/** Records `from`..`to` of `set` in CIFAR-10's layout: label byte, then the 3,072 image bytes. */
function encodeRecords(set: ImageSet, from: number, to: number): Buffer {
  const out = Buffer.allocUnsafe((to - from) * CIFAR10_RECORD_BYTES);
  for (let i = from, at = 0; i < to; i++, at += CIFAR10_RECORD_BYTES) {
    out[at] = set.labels[i];
    out.set(set.images.subarray(i * CIFAR10_IMAGE_BYTES, (i + 1) * CIFAR10_IMAGE_BYTES), at + 1);
  }
  return out;
}

/**
 * Writes `dir/cifar-10-batches-bin/` in CIFAR-10's exact binary layout: the train set spread over
 * `data_batch_1.bin`…, `test_batch.bin`, and `batches.meta.txt`. Returns that folder.
 */
export async function writeCifar10Binary(dir: string, data: Cifar10Data, opts: WriteCifar10Options = {}): Promise<string> {
  const trainFiles = opts.trainFiles ?? 5;
  if (!Number.isSafeInteger(trainFiles) || trainFiles < 1) throw new Error(`trainFiles must be an integer >= 1, got ${trainFiles}`);
  if (data.classNames.length !== CIFAR10_CLASSES || data.classNames.some((n) => n.trim() === '' || /[\r\n]/.test(n))) {
    throw new Error(`CIFAR-10 needs ${CIFAR10_CLASSES} non-empty one-line class names, got ${JSON.stringify(data.classNames)}`);
  }
  checkCifar10Shape(data.train, 'train set');
  checkCifar10Shape(data.test, 'test set');

  const folder = path.join(path.resolve(dir), CIFAR10_FOLDER);
  await fs.promises.mkdir(folder, { recursive: true });
  const n = data.train.count;
  for (let k = 0; k < trainFiles; k++) {
    const from = floor((k * n) / trainFiles);
    const to = floor(((k + 1) * n) / trainFiles);
    await fs.promises.writeFile(path.join(folder, `data_batch_${k + 1}.bin`), encodeRecords(data.train, from, to));
  }
  await fs.promises.writeFile(path.join(folder, CIFAR10_TEST_FILE), encodeRecords(data.test, 0, data.test.count));
  // The original ends with an empty line as well.
  await fs.promises.writeFile(path.join(folder, CIFAR10_META_FILE), `${data.classNames.join('\n')}\n\n`);
  return folder;
}

async function md5Of(file: string): Promise<string> {
  const hash = crypto.createHash('md5');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Writes a `cifar-10-binary.tar.gz` like the official one (entries under `cifar-10-batches-bin/`)
 * to `file`, atomically, and returns its MD5: what a mirror serves and what tests download.
 */
export async function writeCifar10Archive(file: string, data: Cifar10Data, opts: WriteCifar10Options = {}): Promise<{ md5: string }> {
  const dest = path.resolve(file);
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  const work = await fs.promises.mkdtemp(path.join(path.dirname(dest), `.${path.basename(dest)}.tmp-`));
  try {
    await writeCifar10Binary(work, data, opts);
    const archive = path.join(work, 'archive.tar.gz');
    await tar.c({ gzip: true, file: archive, cwd: work, portable: true }, [CIFAR10_FOLDER]);
    const md5 = await md5Of(archive);
    await fs.promises.rename(archive, dest);
    return { md5 };
  } finally {
    await fs.promises.rm(work, { recursive: true, force: true });
  }
}
