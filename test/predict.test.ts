// `xception-torch predict` end to end: a torchvision Inception V3 state dict written by torch.save
// gives, through our decoder, transform and model, PyTorch's top-5 and probabilities on the same
// images with torchvision's transform; a run of this package predicts with its own classes and
// preprocessing; bad input exits 2 with one line, an undecodable file 1 (or a warning with
// --skip-bad-images).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Xception } from '../lib';
import { IMAGENET_CLASSES } from '../lib/data/imagenet-classes';
import { SYNTHETIC_CLASS_NAMES } from '../lib/datasets';
import { decodeImage } from '../lib/images/decode';
import { evalBatch } from '../lib/images/eval-transform';
import { softmax, topK } from '../lib/predict';
import { Trainer } from '../lib/trainer';
import { PYTHON, requirePythonTorch } from './helpers/python';

jest.setTimeout(300_000);

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const ORACLE = path.join(__dirname, 'oracle', 'images.py');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-predict-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function oracle<T>(command: string, args: Record<string, string | number>): T {
  requirePythonTorch();
  const argv = [ORACLE, command, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const r = spawnSync(PYTHON, argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ORACLE_THREADS: '2' } });
  if (r.status !== 0) throw new Error(`images.py ${command} failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, 'predict', ...args], { encoding: 'utf8' });

interface PredictJson {
  model: string;
  numClasses: number;
  transform: { size: number; resize: number; interpolation: string };
  predictions: Array<{ file: string; top: Array<{ index: number; label: string; probability: number }> }>;
  skipped: Array<{ file: string; error: string }>;
}

const weights = path.join(tmp, 'inception_v3.pth');
const images = path.join(tmp, 'images');
let files: string[];
beforeAll(() => {
  oracle('make', { dir: images });
  oracle('save-inception', { out: weights, classes: 1000, seed: 3, 'fc-scale': 2 });
  files = ['big.png', 'tall.png', 'cmyk.jpg'].map((f) => path.join(images, f));
});

describe('predict --weights (a torchvision state dict)', () => {
  it("gives PyTorch's top-5 and probabilities (within 1e-4) with torchvision's preset at a small size", () => {
    // torchvision's preset (bilinear, ImageNet mean/std, transform_input) at 75: Inception's smallest input.
    const r = cli('--model', 'inception_v3', '--weights', weights, '--image-size', '75', '--resize', '86', '--json', ...files);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const ours = JSON.parse(r.stdout) as PredictJson;
    expect(ours.numClasses).toBe(1000);
    expect(ours.transform).toMatchObject({ size: 75, resize: 86, interpolation: 'bilinear' });
    const { probabilities } = oracle<{ probabilities: number[][] }>('predict', {
      weights, files: files.join(','), size: 75, resize: 86, interpolation: 'bilinear', 'transform-input': 1,
    });
    expect(ours.predictions.map((p) => p.file)).toEqual(files);
    // The weights see the images: each has other top classes.
    expect(new Set(ours.predictions.map((p) => p.top[0].index)).size).toBe(files.length);
    ours.predictions.forEach((p, i) => {
      const want = topK(probabilities[i], 5);
      // The reference's top 6 are far enough apart (their logits differ by more than 1e-3, float32
      // noise is ~1e-5) that the order is not down to rounding.
      const six = topK(probabilities[i], 6).map((k) => Math.log(probabilities[i][k]));
      for (let j = 1; j < 6; j++) expect(six[j - 1] - six[j]).toBeGreaterThan(1e-3);
      expect(p.top.map((c) => c.index)).toEqual(want);
      p.top.forEach((c, j) => expect(Math.abs(c.probability - probabilities[i][want[j]])).toBeLessThan(1e-4));
      expect(p.top.map((c) => c.label)).toEqual(want.map((k) => IMAGENET_CLASSES[k]));
    });
  });

  it('prints each image with its top-k classes; a folder is walked', () => {
    const folder = path.join(tmp, 'folder');
    fs.mkdirSync(path.join(folder, 'sub'), { recursive: true });
    fs.copyFileSync(files[0], path.join(folder, 'sub', 'b.png'));
    fs.copyFileSync(files[2], path.join(folder, 'a.jpg'));
    const r = cli('--model', 'inception_v3', '--weights', weights, '--image-size', '75', '--top-k', '2', folder);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[0]).toBe(path.join(folder, 'a.jpg'));
    expect(lines[3]).toBe(path.join(folder, 'sub', 'b.png'));
    expect(lines[1]).toMatch(/^ {2}[01]\.\d{4} {2}.+ \(\d+\)$/);
  });

  it('an undecodable file: exit 1 naming it; with --skip-bad-images a warning, the count, and the rest', () => {
    const bad = path.join(tmp, 'broken.jpg');
    fs.writeFileSync(bad, 'not a jpeg');
    const r = cli('--model', 'inception_v3', '--weights', weights, '--image-size', '75', files[0], bad);
    expect(r.status).toBe(1);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`xception-torch: error: cannot decode image ${bad}: `);

    const s = cli('--model', 'inception_v3', '--weights', weights, '--image-size', '75', '--skip-bad-images', '--json', bad, files[0]);
    expect(s.status).toBe(0);
    expect(s.stderr).toContain(`xception-torch: warning: cannot decode image ${bad}: `);
    expect(s.stderr).toContain('skipped 1 of 2 images that could not be decoded');
    const out = JSON.parse(s.stdout) as PredictJson;
    expect(out.predictions.map((p) => p.file)).toEqual([files[0]]);
    expect(out.skipped.map((x) => x.file)).toEqual([bad]);
  });

  it.each([
    [['--weights', 'W', 'IMG'], '--weights needs --model (xception or inception_v3) or --preset'],
    [['--model', 'inception_v3', 'IMG'], 'name the weights: --checkpoint RUN, or --weights FILE'],
    [['--model', 'inception_v3', '--weights', 'W', '--preset', 'timm-legacy_xception', 'IMG'], '--preset timm-legacy_xception is for xception, not inception_v3'],
    [['--model', 'inception_v3', '--weights', 'W', '--image-size', '60', 'IMG'], "the crop size 60 is below inception_v3's smallest input, 75"],
    [['--model', 'inception_v3', '--weights', 'W', '--image-size', '80', '--resize', '70', 'IMG'], 'the resize (70) must be an integer >= the crop size 80'],
    [['--model', 'inception_v3', '--weights', 'W', '--labels', 'LABELS', 'IMG'], '3 class names for a model of 1000 classes'],
    [['--model', 'inception_v3', '--weights', 'W', 'MISSING'], 'does not exist'],
    [['--model', 'inception_v3', '--weights', 'W', '--mean', '1,2', 'IMG'], 'expected three numbers separated by commas'],
    [['--model', 'inception_v3', '--weights', 'W', '--top-k', '0', 'IMG'], 'expected an integer >= 1'],
    [['--checkpoint', tmp, '--weights', 'W', 'IMG'], '--checkpoint takes the model and weights from the run'],
  ])('refuses %j (exit 2, one line)', (args, message) => {
    const labels = path.join(tmp, 'labels.txt');
    fs.writeFileSync(labels, 'a\nb\nc\n');
    const argv = args.map((a) => ({ W: weights, IMG: files[0], LABELS: labels, MISSING: path.join(tmp, 'missing.png') }[a] ?? a));
    const r = cli(...argv);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });
});

it("predict --checkpoint: the run's model, weights, evaluation preprocessing and class names", async () => {
  const runDir = path.join(tmp, 'run');
  const trainer = new Trainer({
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic',
    synthetic: { trainSize: 16, valSize: 8, testSize: 8 }, epochs: 1, batchSize: 8,
    preprocessing: { crop: 40, resize: 44, evalResize: 46, mean: [0.5, 0.4, 0.3], std: [0.25, 0.25, 0.25] },
    device: 'cpu', outDir: runDir,
  });
  await trainer.fit();
  trainer.dispose();

  const r = cli('--checkpoint', runDir, '--top-k', '10', '--json', files[1]);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as PredictJson;
  expect(out.model).toBe('xception');
  expect(out.transform).toMatchObject({ size: 40, resize: 46, interpolation: 'bilinear' });
  const top = out.predictions[0].top;
  expect(top.map((c) => c.label).sort()).toEqual([...SYNTHETIC_CLASS_NAMES].sort());
  expect(top.map((c) => c.label)).toEqual(top.map((c) => SYNTHETIC_CLASS_NAMES[c.index]));

  // The same weights and transform, in process.
  const model = new Xception({ numClasses: 10, middleFlowBlocks: 1 });
  await model.loadWeights(path.join(runDir, 'checkpoints', 'best', 'model.safetensors'));
  model.eval();
  const logits = await model.forward(evalBatch([await decodeImage(files[1])], { size: 40, resize: 46, mean: [0.5, 0.4, 0.3], std: [0.25, 0.25, 0.25] }));
  model.dispose();
  const p = softmax(logits.data);
  expect(top.map((c) => c.index)).toEqual(topK(p, 10));
  top.forEach((c) => expect(Math.abs(c.probability - p[c.index])).toBeLessThan(1e-6));
});
