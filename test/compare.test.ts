// `xception-torch compare` as a user runs it (the compiled dist/lib/cli.js): a quick training
// comparison end to end, --params-only, --throughput, --activations, bad options, Ctrl-C and
// --resume; and in process, the table's columns and the charts' text.
import { Resvg } from '@resvg/resvg-js';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Comparison } from '../lib/compare';
import { curvesChart } from '../lib/report/charts';
import { formatComparisonMarkdown, formatComparisonTable } from '../lib/report/compare-table';
import { chartToSvg, svgToPng } from '../lib/report/render-chart';
import { interruptWhen } from './helpers/interrupt';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
// Tiny quick runs: 32 training and 16 validation/test images at 75x75, so a comparison takes about a minute.
const QUICK = ['compare', '--quick', '--train-limit', '32', '--eval-limit', '16'];

const XCEPTION_PARAMETERS = 20_827_442;
const INCEPTION_PARAMETERS = { aux: 24_371_444, noAux: 21_806_058 };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[]): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-compare-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** An SVG that resvg parses, drawn by Vega with `marks` of the given kind, and its PNG at twice the size. */
function expectFigure(base: string, marks: string, texts: string[]): void {
  const svg = fs.readFileSync(`${base}.svg`, 'utf8');
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg).toContain(`class="mark-${marks} role-mark`);
  for (const text of texts) expect({ base, text, found: svg.includes(`>${text}<`) }).toEqual({ base, text, found: true });
  const { width, height } = new Resvg(svg);
  const png = fs.readFileSync(`${base}.png`);
  expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
  expect(png.subarray(12, 16).toString('ascii')).toBe('IHDR');
  expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([Math.round(width * 2), Math.round(height * 2)]);
  expect(png.length).toBeGreaterThan(10_000);
}

describe('xception-torch compare --quick', () => {
  const out = path.join(tmp, 'quick');
  let r: Result;
  let c: Comparison;
  beforeAll(() => {
    r = run([...QUICK, '--epochs', '2', '--out', out]);
    c = readJson<Comparison>(path.join(out, 'compare.json'));
  }, 600_000);

  it('trains both models with the same options and prints the table with the reference rows', () => {
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^\[1\/2\] xception$/m);
    expect(r.stdout).toMatch(/^\[2\/2\] inception_v3$/m);
    expect(r.stdout).toMatch(/^epoch 2\/2 {2}train loss/m);
    for (const head of ['Parameters', 'Accuracy', 'Running time (s)', 'Train img/s', 'Peak memory', 'GMACs/image', 'Acc. %/M params']) {
      expect(r.stdout).toContain(head);
    }
    expect(r.stdout).toMatch(/│ xception +│ 20,827,442 │/);
    expect(r.stdout).toMatch(/│ inception_v3 +│ 21,806,058 │/);
    expect(r.stdout).toMatch(/│ reference: inception_v3 +│ 24,371,444 │ +85\.44% │ +1,903\.0 │/);
    expect(r.stdout).toMatch(/│ reference: xception \(notebook variant, ReLU\) +│ 20,825,402 │ +84\.87% │ +3,116\.9 │/);
    expect(r.stdout).toContain(`to ${out}`);
  });

  it('compare.json holds the exact parameter counts and each run\'s own results', () => {
    expect(c).toMatchObject({ kind: 'models', mode: 'train', complete: true, title: 'Xception vs Inception V3' });
    expect(c.rows.map((row) => [row.name, row.parameters])).toEqual([['xception', XCEPTION_PARAMETERS], ['inception_v3', INCEPTION_PARAMETERS.noAux]]);
    expect(c.rows[1].modelOptions).toEqual({ numClasses: 10, auxLogits: false });
    for (const row of c.rows) {
      const metrics = readJson<{ parameters: number; testAccuracy: number; trainingSeconds: number; imagesPerSecond: number; epochs: number }>(
        path.join(out, row.name, 'metrics.json'));
      expect(row).toMatchObject({
        imageSize: 75, parameters: metrics.parameters, testAccuracy: metrics.testAccuracy, trainingSeconds: metrics.trainingSeconds,
        trainImagesPerSecond: metrics.imagesPerSecond, epochs: 2,
      });
      expect(row.trainingSeconds).toBeGreaterThan(0);
      expect(row.accuracyPerMillionParameters).toBeCloseTo((row.testAccuracy! * 100) / (row.parameters / 1e6), 10);
      // The process's peak while it trained: at least the weights, gradients and Adam's two moments in fp32.
      expect(row.peakMemory).toMatchObject({ source: 'process resident set' });
      expect(row.peakMemory!.bytes).toBeGreaterThan(row.parameters * 4 * 4);
    }
    // Xception does more work per image than Inception V3 at any size; 75x75 is about 1/16 of 299x299.
    expect(c.rows[0].macsPerImage).toBeGreaterThan(c.rows[1].macsPerImage);
    expect(c.rows[0].macsPerImage).toBeLessThan(8.36e9 / 10);
    expect(c.reference.map((ref) => ref.label)).toEqual(['reference: xception (notebook variant, ReLU)', 'reference: inception_v3']);
    expect(Object.keys(c.settings)).toEqual(['xception', 'inception_v3']);
  });

  it('compare.md has the table, the notes and links to the figures', () => {
    const md = fs.readFileSync(path.join(out, 'compare.md'), 'utf8');
    expect(md).toMatch(/^# Xception vs Inception V3$/m);
    expect(md).toContain('| Model | Parameters | Accuracy | Running time (s) |');
    expect(md).toMatch(/^\| xception \| 20,827,442 \| \d+\.\d\d% \|/m);
    expect(md).toMatch(/^\| \*reference: inception_v3\* \| \*24,371,444\* \| \*85\.44%\* \|/m);
    for (const f of ['figures/curves.svg', 'figures/curves-xception.svg', 'figures/curves-inception_v3.svg', 'figures/cost.svg']) {
      expect(md).toContain(`](${f})`);
    }
  });

  it('draws the training curves of each model, both overlaid, and the bars of parameters and running time', () => {
    expect(c.figures.sort()).toEqual(['cost', 'curves', 'curves-inception_v3', 'curves-xception']
      .flatMap((f) => [`figures/${f}.png`, `figures/${f}.svg`]).sort());
    expectFigure(path.join(out, 'figures', 'curves-xception'), 'line', ['xception: training curves', 'train', 'validation', 'epoch']);
    expectFigure(path.join(out, 'figures', 'curves-inception_v3'), 'line', ['inception_v3: training curves']);
    expectFigure(path.join(out, 'figures', 'curves'), 'line', ['xception', 'inception_v3', 'train', 'validation']);
    expectFigure(path.join(out, 'figures', 'cost'), 'rect', ['Parameters and running time', 'parameters (millions)', 'running time (s)', '20.83', '21.81']);
  });

  it('leaves each model\'s run folder beside them: history, metrics and checkpoints of its 2 epochs', () => {
    for (const name of ['xception', 'inception_v3']) {
      expect(readJson<{ epochs: unknown[] }>(path.join(out, name, 'history.json')).epochs).toHaveLength(2);
      expect(fs.existsSync(path.join(out, name, 'checkpoints', 'last', 'model.safetensors'))).toBe(true);
    }
  });
});

describe('xception-torch compare --params-only', () => {
  it('--json: the exact parameter counts and multiply-accumulates at 299 (Xception 8.36 G, Inception V3 5.71 G)', () => {
    const out = path.join(tmp, 'params');
    const r = run(['compare', '--params-only', '--json', '--out', out]);
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout) as Comparison;
    expect(readJson(path.join(out, 'compare.json'))).toEqual(printed);
    expect(printed).toMatchObject({ mode: 'params-only', complete: true });
    const [xception, inception] = printed.rows;
    expect([xception.parameters, inception.parameters]).toEqual([XCEPTION_PARAMETERS, INCEPTION_PARAMETERS.aux]);
    expect(Math.abs(xception.macsPerImage / 8.36e9 - 1)).toBeLessThan(0.005);
    expect(Math.abs(inception.macsPerImage / 5.71e9 - 1)).toBeLessThan(0.005);
    expect(xception.testAccuracy).toBeUndefined();
    expectFigure(path.join(out, 'figures', 'cost'), 'rect', ['parameters (millions)', 'GMACs per image', '8.36', '5.71']);
  }, 300_000);

  it('prints a table of only the columns it has, here without the aux head', () => {
    const r = run(['compare', '--params-only', '--no-aux-logits', '--image-size', '150', '--out', path.join(tmp, 'params-150')]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^Xception vs Inception V3: 10 classes, 150x150 input$/m);
    expect(r.stdout).toMatch(/│ inception_v3 +│ 21,806,058 │ +\d\.\d\d │/);
    expect(r.stdout).not.toContain('Accuracy');
    expect(r.stdout).not.toContain('Peak memory');
  }, 300_000);
});

describe('xception-torch compare --throughput', () => {
  it('measures training-step and inference images/s and the peak memory of each model', () => {
    const r = run(['compare', '--throughput', '--quick', '--batch-size', '2', '--steps', '1', '--warmup', '0', '--json', '--out', path.join(tmp, 'throughput')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^\[1\/2\] xception: training \d+\.\d img\/s, inference \d+\.\d img\/s, peak/m);
    const c = JSON.parse(r.stdout) as Comparison;
    expect(c).toMatchObject({ mode: 'throughput', setup: expect.stringContaining('fp32 steps on a random batch of 2 at 75x75') });
    for (const row of c.rows) {
      // Speeds are only checked to be measured: which one is faster depends on the machine's load.
      expect(row.trainImagesPerSecond).toBeGreaterThan(0);
      expect(row.inferImagesPerSecond).toBeGreaterThan(0);
      expect(Number.isFinite(row.inferImagesPerSecond! + row.trainImagesPerSecond!)).toBe(true);
      expect(row.peakMemory!.bytes).toBeGreaterThan(row.parameters * 4 * 4);
      expect(row.inferPeakMemory!.bytes).toBeGreaterThan(row.parameters * 4);
    }
  }, 300_000);
});

describe('xception-torch compare --activations', () => {
  it('trains Xception once per activation and plots their validation curves together', () => {
    const out = path.join(tmp, 'activations');
    const r = run([...QUICK, '--activations', 'none,relu', '--epochs', '1', '--out', out]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/│ xception, none +│ 20,827,442 │/);
    expect(r.stdout).toMatch(/│ xception, relu +│ 20,827,442 │/);
    const c = readJson<Comparison>(path.join(out, 'compare.json'));
    expect(c.kind).toBe('activations');
    expect(c.rows.map((row) => [row.name, (row.modelOptions as { intermediateActivation: string }).intermediateActivation]))
      .toEqual([['xception-none', 'none'], ['xception-relu', 'relu']]);
    expect(c.reference.map((ref) => ref.activation)).toEqual(['relu', 'none']);
    for (const name of ['xception-none', 'xception-relu']) expect(fs.existsSync(path.join(out, name, 'metrics.json'))).toBe(true);
    expectFigure(path.join(out, 'figures', 'curves'), 'line', ['xception, none', 'xception, relu']);
    // Validation curves only: no train/validation legend.
    expect(fs.readFileSync(path.join(out, 'figures', 'curves.svg'), 'utf8')).not.toContain('>train<');
    expect(fs.readFileSync(path.join(out, 'compare.md'), 'utf8')).toMatch(/^# Xception: activation between depthwise and pointwise \(none, relu\)$/m);
  }, 600_000);
});

describe('xception-torch compare: options and errors', () => {
  it('bad options give a one-line error and exit code 2, before anything is written', () => {
    const out = path.join(tmp, 'never');
    for (const args of [
      ['compare', '--activations', 'none,tanh'],
      ['compare', '--activations', 'relu,relu'],
      ['compare', '--activations', 'relu'],
      ['compare', '--activations', 'none,relu', '--activation', 'elu', '--out', out],
      ['compare', '--params-only', '--throughput'],
      ['compare', '--epochs', '0'],
      ['compare', '--throughput', '--steps', '0'],
      ['compare', '--image-size', '32', '--out', out],
      ['compare', '--image-size', '96', '--out', out],
      ['compare', '--model', 'xception'],
      ['compare', '--json', '--out', out],
      ['compare', '--resume'],
      ['compare', '--resume', '--params-only', '--out', out],
    ]) {
      const r = run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect({ args, lines: r.stderr.trim().split('\n').length }).toEqual({ args, lines: 1 });
      expect(r.stderr).toMatch(/error/);
      expect(r.stdout).toBe('');
    }
    expect(fs.existsSync(out)).toBe(false);
  });

  it('--resume of a folder that holds no comparison fails with exit code 1', () => {
    const r = run(['compare', '--resume', '--out', path.join(tmp, 'nothing-here')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^xception-torch: error: nothing to resume/);
  });

  it('--help lists the comparison options and not --model', () => {
    const r = run(['compare', '--help']);
    expect(r.code).toBe(0);
    for (const option of ['--params-only', '--throughput', '--activations <list>', '--steps <n>', '--quick', '--resume', '--epochs <n>']) {
      expect(r.stdout).toContain(option);
    }
    expect(r.stdout).not.toContain('--model');
    expect(r.stdout).toContain('runs/compare-<timestamp>');
  });
});

describe('xception-torch compare: Ctrl-C and --resume', () => {
  it('the first SIGINT checkpoints the model in training and exits 130; --resume finishes the comparison', async () => {
    const out = path.join(tmp, 'interrupted');
    // 64 images = 4 batches: the signal after the first lands before the epoch's end.
    const { code, signalled, stdout, stderr } = await interruptWhen(process.execPath, [CLI, 'compare', '--quick', '--train-limit', '64', '--eval-limit', '16', '--epochs', '1', '--out', out], /^epoch 1\/1 {2}batch 1\/4/m);
    expect({ code, signalled, stderr }).toEqual({ code: 130, signalled: true, stderr: expect.stringContaining('stopping after this batch') });
    expect(stdout).toContain(`interrupted: checkpoint in ${path.join(out, 'xception', 'checkpoints', 'last')}`);
    expect(stdout).toContain(`resume with: xception-torch compare --resume --out ${out}`);
    expect(readJson<Comparison>(path.join(out, 'compare.json')).complete).toBe(false);
    expect(fs.existsSync(path.join(out, 'inception_v3'))).toBe(false);

    const resumed = run(['compare', '--resume', '--out', out]);
    expect({ code: resumed.code, stderr: resumed.stderr }).toEqual({ code: 0, stderr: '' });
    expect(resumed.stdout).toMatch(/^resuming at epoch 1\/1: xception/m);
    const c = readJson<Comparison>(path.join(out, 'compare.json'));
    expect(c.complete).toBe(true);
    // The options came from the interrupted comparison.
    expect(c.rows.map((row) => [row.name, row.epochs, row.imageSize])).toEqual([['xception', 1, 75], ['inception_v3', 1, 75]]);
    expect(readJson<{ options: { trainLimit: number } }>(path.join(out, 'inception_v3', 'history.json')).options.trainLimit).toBe(64);

    // Resuming a finished comparison keeps its runs and writes the report again.
    const again = run(['compare', '--resume', '--out', out]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^\[1\/2\] xception: finished before, kept$/m);
    expect(again.stdout).toMatch(/^\[2\/2\] inception_v3: finished before, kept$/m);
    expect(readJson<Comparison>(path.join(out, 'compare.json')).rows.map((row) => row.testAccuracy)).toEqual(c.rows.map((row) => row.testAccuracy));
  }, 600_000);
});

describe('comparison report, in process', () => {
  const epochs = [1, 2, 3].map((epoch) => ({
    epoch, trainLoss: 2 / epoch, trainAccuracy: 0.3 * epoch, valLoss: 2.2 / epoch, valAccuracy: 0.25 * epoch,
    lr: 1e-3, lossScale: 1, seconds: 10, imagesPerSecond: 50, skippedSteps: 0,
  }));

  it('the PNG draws the chart\'s text with the bundled font', async () => {
    const svg = await chartToSvg(curvesChart([{ label: 'xception', epochs }], { title: 'A title to render' }));
    const withoutText = svg.replace(/<text[^>]*>[^<]*<\/text>/g, '');
    expect(withoutText.length).toBeLessThan(svg.length);
    // Text changes the pixels only when drawn: resvg silently skips text whose font it lacks.
    expect(svgToPng(svg).equals(svgToPng(withoutText))).toBe(false);
  });

  it('the table shows the columns our rows have figures for, then the reference rows', () => {
    const comparison: Comparison = {
      kind: 'models', mode: 'params-only', complete: true, createdAt: '2025-01-01T00:00:00.000Z', title: 'T', setup: 'S', settings: {},
      runtime: { libtorch: '2.5.1', device: 'cpu', threads: 2 },
      rows: [{ name: 'xception', label: 'xception', model: 'xception', modelOptions: {}, imageSize: 299, parameters: 1_500_000, macsPerImage: 2.5e9 }],
      reference: [{ label: 'reference: x', model: 'xception', parameters: 2_000_000, testAccuracy: 0.5, trainingSeconds: 12.25 }],
      figures: ['figures/cost.svg', 'figures/cost.png'],
    };
    const table = formatComparisonTable(comparison);
    expect(table.split('\n')[0]).toBe('T: S');
    expect(table).toMatch(/│ xception +│ +1,500,000 │ +2\.50 │/);
    expect(table).toMatch(/│ reference: x +│ +2,000,000 │ +│/);
    expect(table).not.toContain('Accuracy');
    const md = formatComparisonMarkdown(comparison);
    expect(md).toContain('| Model | Parameters | GMACs/image |\n|---|---:|---:|\n| xception | 1,500,000 | 2.50 |\n| *reference: x* | *2,000,000* |  |');
    expect(md).toContain('![figures/cost.svg](figures/cost.svg)');
    expect(md).not.toContain('cost.png');
  });
});
