// Image folders (--dataset folder): ImageFolder's classes, files and labels; torchvision's
// RandomResizedCrop boxes; crops equal to torchvision's PIL transforms; evaluation through the streamed
// feed equal to PyTorch's on the same weights; seeded crops and exact resumes; undecodable files.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { ImageDecodeError } from '../lib/errors';
import { imageFolderClasses, loadImageFolder } from '../lib/datasets/image-folder';
import { decodeImage } from '../lib/images/decode';
import { evalCrop, resizedCrop } from '../lib/images/folder-transform';
import { randomResizedCropBox } from '../lib/images/random-resized-crop';
import { createRng } from '../lib/random';
import { Trainer, TrainerOptions } from '../lib/trainer';
import { checkCacheFits } from '../lib/training-data';
import { runOracle } from './helpers/python';

jest.setTimeout(300_000);

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-folder-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A smooth picture with texture (as a photo has), different for each seed. */
function picture(width: number, height: number, seed: number): Buffer {
  const data = Buffer.alloc(width * height * 3);
  const rng = createRng(seed);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = 127.5 + 127.5 * Math.sin(x / (4 + seed % 5) + seed);
      data[i + 1] = 127.5 + 127.5 * Math.cos(y / 6 - seed);
      data[i + 2] = Math.min(255, ((x + y) % 23) * 11 + rng() * 20);
    }
  }
  return data;
}

async function writeImage(file: string, width: number, height: number, seed: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const image = sharp(picture(width, height, seed), { raw: { width, height, channels: 3 } });
  await (/\.png$/i.test(file) ? image.png() : image.jpeg({ quality: 90 })).toFile(file);
}

/** D/<class>/<n>.jpg: `perClass` images of each class, of varied sizes. */
async function makeFolder(root: string, classes: string[], perClass: number, size = (i: number) => [60 + 5 * i, 48 + 3 * i]): Promise<void> {
  for (const [c, name] of classes.entries()) {
    for (let i = 0; i < perClass; i++) {
      const [w, h] = size(i);
      await writeImage(path.join(root, name, `${i}.jpg`), w, h, 10 * c + i);
    }
  }
}

describe('the layout, as torchvision ImageFolder reads it', () => {
  it('classes, files and labels in ImageFolder order (nested folders, links, extensions in any case)', async () => {
    const root = path.join(tmp, 'layout');
    await writeImage(path.join(root, 'B', 'x.jpg'), 8, 8, 1);
    await writeImage(path.join(root, 'B', 'y.PNG'), 8, 8, 2);
    fs.writeFileSync(path.join(root, 'B', 'notes.txt'), 'not an image');
    fs.writeFileSync(path.join(root, 'B', 'z.bmp'), 'left out: the decoder does not read BMP');
    await writeImage(path.join(root, 'a', 'sub2', 'c.jpg'), 8, 8, 3);
    await writeImage(path.join(root, 'a', 'sub1', 'd.jpeg'), 8, 8, 4);
    await writeImage(path.join(root, 'a', 'e.jpg'), 8, 8, 5);
    await writeImage(path.join(root, 'a b', 'f.png'), 8, 8, 6);
    fs.symlinkSync(path.join(root, 'a', 'sub1'), path.join(root, 'linked'));
    const want = runOracle<{ classes: string[]; samples: Array<[string, number]> }>('images.py', 'folder', { dir: root });
    const ours = await loadImageFolder(root, { valSize: 1 });
    expect(ours.classNames).toEqual(want.classes);
    expect(await imageFolderClasses(root)).toEqual(want.classes);
    // Without train/, the whole folder is split: together the two parts are ImageFolder's samples.
    const all = [...ours.train.files.map((f, i) => [f, ours.train.labels[i]]), ...ours.val.files.map((f, i) => [f, ours.val.labels[i]])];
    all.sort((x, y) => want.samples.findIndex((s) => s[0] === x[0]) - want.samples.findIndex((s) => s[0] === y[0]));
    expect(all).toEqual(want.samples);
    expect(ours.ignored).toEqual({ '.bmp': 1 });
    expect(ours.testIsVal).toBe(true);
  });

  it('without train/: a seeded hold-out of a tenth, each part in folder order', async () => {
    const root = path.join(tmp, 'holdout');
    for (let i = 0; i < 25; i++) await writeImage(path.join(root, `c${i % 2}`, `${String(i).padStart(2, '0')}.png`), 4, 4, i);
    const a = await loadImageFolder(root, { seed: 1 });
    const b = await loadImageFolder(root, { seed: 1 });
    const c = await loadImageFolder(root, { seed: 2 });
    expect(a.val.files).toHaveLength(2);
    expect(a.train.files).toHaveLength(23);
    expect(b.val.files).toEqual(a.val.files);
    expect(c.val.files).not.toEqual(a.val.files);
    expect(new Set([...a.train.files, ...a.val.files]).size).toBe(25);
    expect([...a.train.files].sort()).toEqual(a.train.files);
  });

  it('train/ and val/: labels follow the training classes (a val/ with fewer classes keeps them)', async () => {
    const root = path.join(tmp, 'splits');
    await writeImage(path.join(root, 'train', 'ant', '0.jpg'), 8, 8, 1);
    await writeImage(path.join(root, 'train', 'bee', '0.jpg'), 8, 8, 2);
    await writeImage(path.join(root, 'val', 'bee', '0.jpg'), 8, 8, 3);
    await writeImage(path.join(root, 'test', 'ant', '0.jpg'), 8, 8, 4);
    const d = await loadImageFolder(root);
    expect(d.classNames).toEqual(['ant', 'bee']);
    expect(Array.from(d.val.labels)).toEqual([1]);
    expect(Array.from(d.test.labels)).toEqual([0]);
    expect(d.testIsVal).toBe(false);
  });

  it('clear errors: not a folder, no classes, an empty class, a class train/ lacks', async () => {
    await expect(loadImageFolder(path.join(tmp, 'missing'))).rejects.toThrow('is not a folder');
    fs.mkdirSync(path.join(tmp, 'empty'));
    await expect(loadImageFolder(path.join(tmp, 'empty'))).rejects.toThrow('holds no class folders');
    const root = path.join(tmp, 'bad-splits');
    await writeImage(path.join(root, 'train', 'ant', '0.jpg'), 8, 8, 1);
    fs.mkdirSync(path.join(root, 'train', 'bee'));
    await expect(loadImageFolder(root)).rejects.toThrow(`the class folder ${path.join(root, 'train', 'bee')} holds no .jpg, .jpeg, .png files`);
    await writeImage(path.join(root, 'train', 'bee', '0.jpg'), 8, 8, 2);
    await writeImage(path.join(root, 'val', 'cow', '0.jpg'), 8, 8, 3);
    await expect(loadImageFolder(root)).rejects.toThrow(`${path.join(root, 'val', 'cow')} is a class the training split does not have`);
  });
});

describe("RandomResizedCrop's boxes", () => {
  const oracleBoxes = (args: Record<string, string | number>) => runOracle<{ boxes: number[][] }>('images.py', 'rrc', args).boxes;

  it("the fallback box equals torchvision's when no draw fits", () => {
    const cases = [
      { width: 100, height: 100, scale: [1, 1], ratio: [2, 2] },
      { width: 20, height: 300, scale: [0.9, 1], ratio: [0.75, 4 / 3] },
      { width: 300, height: 20, scale: [0.9, 1], ratio: [0.75, 4 / 3] },
    ] as const;
    for (const c of cases) {
      const [want] = oracleBoxes({ width: c.width, height: c.height, draws: 1, scale: c.scale.join(','), ratio: c.ratio.join(',') });
      const box = randomResizedCropBox(c.width, c.height, createRng(0), { scale: c.scale, ratio: c.ratio });
      expect([box.top, box.left, box.height, box.width]).toEqual(want);
    }
  });

  it("boxes are distributed as torchvision's (area share and aspect ratio quartiles)", () => {
    const n = 4000;
    const theirs = oracleBoxes({ width: 500, height: 375, draws: n, seed: 0 });
    const rng = createRng(7);
    const ours = Array.from({ length: n }, () => {
      const b = randomResizedCropBox(500, 375, rng);
      expect(b.top).toBeGreaterThanOrEqual(0);
      expect(b.left).toBeGreaterThanOrEqual(0);
      expect(b.top + b.height).toBeLessThanOrEqual(375);
      expect(b.left + b.width).toBeLessThanOrEqual(500);
      return [b.top, b.left, b.height, b.width];
    });
    const quartiles = (boxes: number[][], f: (b: number[]) => number) => {
      const v = boxes.map(f).sort((a, b) => a - b);
      return [0.25, 0.5, 0.75].map((q) => v[Math.floor(q * v.length)]);
    };
    const area = (b: number[]) => (b[2] * b[3]) / (500 * 375);
    const logRatio = (b: number[]) => Math.log(b[3] / b[2]);
    const centre = (b: number[]) => (b[1] + b[3] / 2) / 500;
    for (const f of [area, logRatio, centre]) {
      quartiles(ours, f).forEach((q, i) => expect(Math.abs(q - quartiles(theirs, f)[i])).toBeLessThan(0.03));
    }
  });
});

describe("the crops equal torchvision's PIL transforms, byte for byte", () => {
  const transform = (size: number, interpolation: 'bilinear' | 'bicubic', cropPct = 0.875) => ({ size, cropPct, interpolation, flip: false });

  it('evaluation: Resize(floor(size / crop_pct)) + CenterCrop(size), reducing and enlarging, both filters', async () => {
    const files: string[] = [];
    for (const [i, [w, h]] of [[120, 90], [61, 37], [90, 160], [48, 48]].entries()) {
      files.push(path.join(tmp, 'eval', `${i}.png`));
      await writeImage(files[i], w, h, 20 + i);
    }
    const files2 = [...files, path.join(tmp, 'eval', 'photo.jpg')];
    await writeImage(files2[4], 77, 101, 7);
    const size = 48;
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (const interpolation of ['bilinear', 'bicubic'] as const) {
      const out = path.join(tmp, `eval-${interpolation}.f32`);
      runOracle('images.py', 'transform', { files: files2.join(','), size, resize: Math.floor(size / 0.875), interpolation, out });
      const theirs = new Float32Array(fs.readFileSync(out).buffer.slice(0));
      const per = 3 * size * size;
      for (const [i, file] of files2.entries()) {
        const crop = new Uint8Array(per);
        await evalCrop(await decodeImage(file), transform(size, interpolation), crop, 0);
        let worst = 0;
        for (let c = 0; c < 3; c++) {
          for (let p = 0; p < size * size; p++) {
            const level = theirs[i * per + c * size * size + p] * std[c] * 255 + mean[c] * 255;
            worst = Math.max(worst, Math.abs(crop[p * 3 + c] - level));
          }
        }
        expect([file, interpolation, worst < 1e-3]).toEqual([file, interpolation, true]);
      }
    }
  });

  it("training: RandomResizedCrop's resized_crop of a box, and the flip", async () => {
    const file = path.join(tmp, 'rrc', 'photo.jpg');
    await writeImage(file, 130, 97, 3);
    const image = await decodeImage(file);
    const boxes = [[0, 0, 97, 130], [10, 20, 30, 50], [50, 77, 47, 53], [5, 5, 90, 60]];
    const size = 40;
    for (const interpolation of ['bilinear', 'bicubic'] as const) {
      const out = path.join(tmp, `rrc-${interpolation}.u8`);
      runOracle('images.py', 'resized-crop', { files: boxes.map(() => file).join(','), boxes: boxes.map((b) => b.join(',')).join(';'), size, interpolation, out });
      const theirs = fs.readFileSync(out);
      const per = size * size * 3;
      for (const [i, [top, left, height, width]] of boxes.entries()) {
        const crop = new Uint8Array(per);
        await resizedCrop(image, { top, left, height, width }, size, interpolation, false, crop, 0);
        expect(Buffer.from(crop).equals(theirs.subarray(i * per, (i + 1) * per))).toBe(true);
        const flipped = new Uint8Array(per);
        await resizedCrop(image, { top, left, height, width }, size, interpolation, true, flipped, 0);
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            const a = (y * size + x) * 3;
            const b = (y * size + size - 1 - x) * 3;
            expect([flipped[a], flipped[a + 1], flipped[a + 2]]).toEqual([crop[b], crop[b + 1], crop[b + 2]]);
          }
        }
      }
    }
  });
});

describe('training and evaluating on a folder', () => {
  it("evaluation through the streamed feed equals PyTorch's on the same weights and pixels", async () => {
    // Both sides decode, resize to 341 (299 / crop_pct 0.875) and centre-crop 299 the same way.
    const root = path.join(tmp, 'parity');
    const classes = ['c0', 'c1', 'c2'];
    await makeFolder(path.join(root, 'train'), classes, 2, () => [80, 80]);
    await makeFolder(path.join(root, 'val'), classes, 1, () => [80, 80]);
    for (const [c, name] of classes.entries()) {
      for (let i = 0; i < 2; i++) await writeImage(path.join(root, 'test', name, `${i}.jpg`), 360 - 40 * i, 320 + 30 * i, 100 + 10 * c + i);
    }
    const weights = path.join(tmp, 'inception3.pth');
    // A small fc: logits a few units apart, so the loss is not saturated (their BatchNorm statistics
    // come from 96-pixel pictures, which make the features at 299 large).
    runOracle('images.py', 'save-inception', { out: weights, classes: 3, seed: 5, 'fc-scale': 3e-4 });
    const trainer = new Trainer({
      model: 'inception_v3', dataset: 'folder', dataDir: root, initWeights: weights,
      preprocessing: { crop: 299 }, batchSize: 2, evalBatchSize: 4, device: 'cpu', outDir: path.join(tmp, 'parity-run'),
    });
    try {
      const ours = await trainer.evaluate('test');
      const files = classes.flatMap((name) => [0, 1].map((i) => path.join(root, 'test', name, `${i}.jpg`)));
      const { probabilities } = runOracle<{ probabilities: number[][] }>('images.py', 'predict', {
        weights, files: files.join(','), size: 299, resize: 341, classes: 3,
      });
      const labels = [0, 0, 1, 1, 2, 2];
      const loss = labels.reduce((s, c, i) => s - Math.log(probabilities[i][c]), 0) / labels.length;
      const confusion = [0, 0, 0, 0, 0, 0, 0, 0, 0];
      probabilities.forEach((p, i) => confusion[labels[i] * 3 + p.indexOf(Math.max(...p))]++);
      expect(loss).toBeGreaterThan(0.05);
      expect(ours.images).toBe(6);
      expect(Math.abs(ours.loss - loss) / loss).toBeLessThan(1e-4);
      expect(ours.confusion.flat()).toEqual(confusion);
      expect(ours.classNames).toEqual(classes);
    } finally {
      trainer.dispose();
    }
  });

  const small = (root: string, outDir: string, extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
    model: 'xception', dataset: 'folder', dataDir: root, preprocessing: { crop: 71 }, batchSize: 4, epochs: 1, device: 'cpu', outDir, seed: 3, ...extra,
  });

  it('crops are seeded: an interrupted and resumed epoch ends with the same weights as one run through', async () => {
    const root = path.join(tmp, 'train');
    await makeFolder(root, ['x', 'y', 'z'], 6);
    const whole = new Trainer(small(root, path.join(tmp, 'whole')));
    const wholeHistory = await whole.fit();
    whole.dispose();
    expect(wholeHistory.epochs).toHaveLength(1);

    const controller = new AbortController();
    const first = new Trainer(small(root, path.join(tmp, 'resumed')));
    first.on('batch', () => controller.abort());
    expect((await first.fit({ signal: controller.signal })).interrupted).toBe(true);
    first.dispose();
    const second = new Trainer(small(root, path.join(tmp, 'resumed')));
    const resumed = await second.fit({ resume: true });
    second.dispose();
    expect(resumed.epochs[0].trainLoss).toBe(wholeHistory.epochs[0].trainLoss);
    expect(resumed.epochs[0].valLoss).toBe(wholeHistory.epochs[0].valLoss);
    const weights = (dir: string) => fs.readFileSync(path.join(dir, 'checkpoints', 'last', 'model.safetensors'));
    expect(weights(path.join(tmp, 'resumed')).equals(weights(path.join(tmp, 'whole')))).toBe(true);
  });

  it('--cache-images: evaluation from memory equals streaming, and later epochs need the files no more', async () => {
    const root = path.join(tmp, 'cached');
    await makeFolder(path.join(root, 'train'), ['x', 'y', 'z'], 4);
    await makeFolder(path.join(root, 'val'), ['x', 'y', 'z'], 1);
    const streamed = new Trainer(small(root, path.join(tmp, 'streamed')));
    const want = await streamed.evaluate('val');
    streamed.dispose();
    const cached = new Trainer(small(root, path.join(tmp, 'cached-run'), { epochs: 2, imageFolder: { cacheImages: true } }));
    try {
      expect((await cached.evaluate('val')).loss).toBe(want.loss);
      // After the first epoch (which decoded every training image) the folder goes away.
      const moved = `${root}-moved`;
      cached.on('epoch', () => fs.existsSync(root) && fs.renameSync(root, moved));
      const history = await cached.fit();
      expect(history.epochs).toHaveLength(2);
      expect(fs.existsSync(root)).toBe(false);
      fs.renameSync(moved, root);
    } finally {
      cached.dispose();
    }
    const folder = await loadImageFolder(root);
    expect(() => checkCacheFits(folder, 341, 16 * 2 ** 30)).not.toThrow();
    expect(() => checkCacheFits(folder, 341, 2 ** 20)).toThrow(
      /^--cache-images: the 15 images would need about 7 MiB in memory, more than half of the 1 MiB free; leave out --cache-images/,
    );
  });

  it('an undecodable file stops the run naming it; with skipBadImages it is reported once and left out', async () => {
    const root = path.join(tmp, 'bad');
    await makeFolder(path.join(root, 'train'), ['p', 'q'], 5);
    await makeFolder(path.join(root, 'val'), ['p', 'q'], 1);
    const broken = path.join(root, 'train', 'q', 'broken.jpg');
    fs.writeFileSync(broken, 'not a jpeg');
    const truncated = path.join(root, 'val', 'p', 'truncated.jpg');
    fs.writeFileSync(truncated, fs.readFileSync(path.join(root, 'val', 'p', '0.jpg')).subarray(0, 300));

    const strict = new Trainer(small(root, path.join(tmp, 'bad-strict')));
    const error = await strict.fit().catch((e: unknown) => e);
    strict.dispose();
    expect(error).toBeInstanceOf(ImageDecodeError);
    expect((error as ImageDecodeError).file).toBe(broken);

    const lenient = new Trainer(small(root, path.join(tmp, 'bad-skip'), { epochs: 2, imageFolder: { skipBadImages: true } }));
    const reported: string[] = [];
    lenient.on('badImage', (e: ImageDecodeError) => reported.push(e.file));
    const history = await lenient.fit();
    lenient.dispose();
    expect(history.epochs).toHaveLength(2);
    expect(reported.sort()).toEqual([broken, truncated].sort());
  });

  it('the CLI: --dataset folder trains with one output per class and a preset; a bad file exits 1 naming it, or warns with --skip-bad-images; predict evaluates as the run did', () => {
    const root = path.join(tmp, 'bad');
    const run = (out: string, ...extra: string[]) => spawnSync(process.execPath, [
      CLI, 'train', '--dataset', 'folder', '--data-dir', root, '--image-size', '71', '-b', '4', '--epochs', '1', '--device', 'cpu', '--out', path.join(tmp, out), ...extra,
    ], { encoding: 'utf8' });
    const strict = run('cli-strict');
    expect(strict.status).toBe(1);
    expect(strict.stderr).toContain(`xception-torch: error: cannot decode image ${path.join(root, 'train', 'q', 'broken.jpg')}: `);
    const lenient = run('cli-skip', '--skip-bad-images', '--preset', 'timm-legacy_xception');
    expect(lenient.status).toBe(0);
    expect(lenient.stderr).toContain('xception-torch: warning: left out: cannot decode image');
    expect(lenient.stderr).toContain('xception-torch: warning: 2 image files could not be decoded and were left out');
    const history = JSON.parse(fs.readFileSync(path.join(tmp, 'cli-skip', 'history.json'), 'utf8')) as {
      options: { modelOptions: { numClasses: number }; preprocessing: { mean: number[] }; imageFolder: { interpolation: string; cropPct: number } };
    };
    expect(history.options.modelOptions.numClasses).toBe(2);
    // timm's Xception weights' preprocessing: mean = std = 0.5, bicubic, crop_pct 0.8975.
    expect(history.options.preprocessing.mean).toEqual([0.5, 0.5, 0.5]);
    expect(history.options.imageFolder).toMatchObject({ interpolation: 'bicubic', cropPct: 0.8975 });
    const predicted = spawnSync(process.execPath, [CLI, 'predict', '--checkpoint', path.join(tmp, 'cli-skip'), '--json', path.join(root, 'val', 'q')], { encoding: 'utf8' });
    expect(predicted.status).toBe(0);
    const out = JSON.parse(predicted.stdout) as { transform: object; predictions: Array<{ top: Array<{ label: string }> }> };
    expect(out.transform).toMatchObject({ size: 71, resize: Math.floor(71 / 0.8975), interpolation: 'bicubic' });
    expect(out.predictions[0].top.map((c) => c.label).sort()).toEqual(['p', 'q']);
  });
});
