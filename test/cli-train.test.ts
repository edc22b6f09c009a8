// `xception-torch train` and `evaluate` as a user runs them (the compiled dist/lib/cli.js): a quick
// run end to end, evaluation of its checkpoints, bad options, a missing dataset, Ctrl-C and resume;
// and how the train options resolve (the settings, in process).
import { spawnSync } from 'child_process';
import { Command } from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addTrainOptions, resolveTrainSettings, toTrainerOptions } from '../lib/commands/train';
import { createSyntheticDataset, writeCifar10Binary } from '../lib/datasets';
import { interruptWhen } from './helpers/interrupt';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
// Small quick runs: 64 (or 160) of the 512 synthetic training images, so that an epoch takes seconds.
const QUICK = ['train', '--quick', '--train-limit', '64'];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: opts.cwd, env: { ...process.env, ...opts.env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-cli-train-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const EPOCH_LINE = /^epoch 1\/1 {2}train loss \d+\.\d{4} acc \d\.\d{4} {2}val loss \d+\.\d{4} acc \d\.\d{4} {2}\d+\.\d s {2}\d+\.\d img\/s$/m;

describe('xception-torch train --quick, then evaluate', () => {
  const out = path.join(tmp, 'quick');
  let train: Result;
  beforeAll(() => {
    train = run([...QUICK, '--epochs', '1', '--out', out]);
  }, 600_000);

  it('trains, prints the epoch line and the test accuracy, and fills the run folder', () => {
    expect({ code: train.code, stderr: train.stderr }).toEqual({ code: 0, stderr: '' });
    expect(train.stdout).toMatch(EPOCH_LINE);
    expect(train.stdout).toMatch(/^test accuracy \d\.\d{4}/m);
    expect(train.stdout).toContain(`run folder: ${out}`);
    for (const file of ['history.json', 'history.csv', 'metrics.json', 'command.json']) expect(fs.existsSync(path.join(out, file))).toBe(true);
    for (const name of ['last', 'best']) {
      for (const file of ['model.safetensors', 'state.safetensors']) expect(fs.existsSync(path.join(out, 'checkpoints', name, file))).toBe(true);
    }
    const metrics = readJson<{ model: string; parameters: number; testAccuracy: number; epochs: number }>(path.join(out, 'metrics.json'));
    expect(metrics).toMatchObject({ model: 'xception', parameters: 20_827_442, epochs: 1 });
    expect(typeof metrics.testAccuracy).toBe('number');
    const history = readJson<{ options: Record<string, unknown>; epochs: unknown[] }>(path.join(out, 'history.json'));
    expect(history.epochs).toHaveLength(1);
    expect(history.options).toMatchObject({
      dataset: 'synthetic', batchSize: 16, epochs: 1, device: 'cpu', amp: 'off', trainLimit: 64,
      preprocessing: expect.objectContaining({ crop: 32, resize: 36, evalResize: 32 }),
    });
    expect(fs.readFileSync(path.join(out, 'history.csv'), 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('refuses to start over an existing run, and to resume a finished one without more epochs', () => {
    for (const args of [['train', '--quick', '--out', out], ['train', '--resume', '--out', out]]) {
      const r = run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(readJson<{ epochs: number }>(path.join(out, 'metrics.json')).epochs).toBe(1);
  });

  it('evaluate on the run folder prints loss, accuracy, per-class accuracy and the confusion matrix', () => {
    const r = run(['evaluate', '--checkpoint', out]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toContain(path.join(out, 'checkpoints', 'best'));
    expect(r.stdout).toMatch(/^loss \d+\.\d{4} {2}accuracy \d\.\d{4}$/m);
    expect(r.stdout).toMatch(/Per-class accuracy/);
    expect(r.stdout).toMatch(/Confusion matrix/);
    expect(r.stdout).toMatch(/\b0 disc\b/);
    const written = readJson<{ split: string; images: number; confusion: number[][] }>(path.join(out, 'evaluation-test.json'));
    expect(written.split).toBe('test');
    expect(written.confusion.flat().reduce((a, b) => a + b, 0)).toBe(written.images);
  }, 300_000);

  it('evaluate on the last checkpoint reproduces the test accuracy of metrics.json', () => {
    const r = run(['evaluate', '--checkpoint', path.join(out, 'checkpoints', 'last'), '--json']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const printed = JSON.parse(r.stdout) as { accuracy: number; loss: number; split: string; images: number };
    const written = readJson<typeof printed>(path.join(out, 'evaluation-test.json'));
    expect(written).toEqual(printed);
    const metrics = readJson<{ testAccuracy: number; testLoss: number }>(path.join(out, 'metrics.json'));
    expect(Math.abs(printed.accuracy - metrics.testAccuracy)).toBeLessThan(1e-9);
    expect(printed.loss).toBeCloseTo(metrics.testLoss, 6);
    expect(printed).toMatchObject({ split: 'test', images: 128 });
  }, 300_000);

  it('evaluate --split val on the last checkpoint reproduces the validation accuracy of history.json', () => {
    const r = run(['evaluate', '--checkpoint', path.join(out, 'checkpoints', 'last'), '--split', 'val', '--json']);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const printed = JSON.parse(r.stdout) as { accuracy: number; split: string };
    expect(readJson(path.join(out, 'evaluation-val.json'))).toEqual(printed);
    const history = readJson<{ epochs: Array<{ valAccuracy: number }> }>(path.join(out, 'history.json'));
    expect(printed.split).toBe('val');
    expect(Math.abs(printed.accuracy - history.epochs[0].valAccuracy)).toBeLessThan(1e-9);
  }, 300_000);
});

describe('train settings: command line over --quick over the resumed run over the defaults', () => {
  const settings = (args: string[], saved?: Parameters<typeof resolveTrainSettings>[2]) => {
    const cmd = addTrainOptions(new Command('train').exitOverride());
    cmd.parse(args, { from: 'user' });
    return resolveTrainSettings(cmd.opts(), (key) => cmd.getOptionValueSource(key), saved);
  };

  it('defaults reproduce the reference setup', () => {
    expect(settings([])).toMatchObject({
      model: 'xception', dataset: 'cifar10', epochs: 10, batchSize: 128, lr: 1e-3, optimizer: 'adam', amp: 'auto',
      device: 'auto', imageSize: 299, resize: 320, numClasses: 10, valSize: 5000, seed: 0, auxWeight: 0.4,
    });
    const o = toTrainerOptions(settings(['--activation', 'elu', '--variant', 'notebook']));
    expect(o.modelOptions).toEqual({ numClasses: 10, intermediateActivation: 'elu', variant: 'notebook' });
    expect(o.preprocessing).toEqual({ crop: 299, resize: 320, evalResize: 299 });
    expect(toTrainerOptions(settings(['--model', 'inception_v3'])).modelOptions).toEqual({ numClasses: 10, auxLogits: true });
    expect(toTrainerOptions(settings(['--model', 'inception_v3', '--image-size', '96', '--no-aux-logits'])).modelOptions)
      .toEqual({ numClasses: 10, auxLogits: false });
  });

  it('--image-size alone scales the resize; --quick presets yield to explicit options', () => {
    expect(settings(['--image-size', '150'])).toMatchObject({ imageSize: 150, resize: 160 });
    expect(settings(['--image-size', '150', '--resize', '150'])).toMatchObject({ imageSize: 150, resize: 150 });
    expect(settings(['--quick'])).toMatchObject({
      dataset: 'synthetic', imageSize: 32, resize: 36, batchSize: 16, epochs: 3, device: 'cpu', amp: 'off',
      synthetic: { trainSize: 512, valSize: 128, testSize: 128, difficulty: 'easy' },
    });
    expect(settings(['--quick', '--epochs', '1', '--image-size', '64', '--val-size', '32'])).toMatchObject({
      epochs: 1, imageSize: 64, resize: 68, batchSize: 16, synthetic: { trainSize: 512, valSize: 32 },
    });
  });

  it('--resume keeps the run\'s options unless given again', () => {
    const saved = { dataset: 'synthetic' as const, epochs: 3, imageSize: 48, resize: 52, trainLimit: 100, synthetic: { trainSize: 200 } };
    expect(settings(['--resume', '--out', 'x'], saved)).toMatchObject({ ...saved, batchSize: 128, out: 'x' });
    expect(settings(['--resume', '--out', 'x', '--epochs', '5', '--image-size', '64'], saved)).toMatchObject({ epochs: 5, imageSize: 64, resize: 68, trainLimit: 100 });
  });
});

describe('xception-torch train: options and errors', () => {
  it('bad options give a one-line error and exit code 2', () => {
    const out = path.join(tmp, 'never');
    for (const args of [
      ['train', '--epochs', '0'],
      ['train', '--epochs', 'ten'],
      ['train', '--amp', 'fp8'],
      ['train', '--lr', '-1'],
      ['train', '--device', 'gpu'],
      ['train', '--model', 'inception_v3', '--image-size', '32'],
      ['train', '--model', 'inception_v3', '--image-size', '96'],
      ['train', '--quick', '--resize', '16'],
      ['train', '--num-classes', '5'],
      ['train', '--resume'],
      ['train', '--quick', '--bogus'],
      ['evaluate'],
      ['evaluate', '--checkpoint', out, '--split', 'train'],
    ]) {
      const r = run(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/error/);
      expect(r.stdout).toBe('');
    }
    expect(fs.existsSync(out)).toBe(false);
  });

  it('--help documents each option with its default', () => {
    const r = run(['train', '--help']);
    expect(r.code).toBe(0);
    // One entry per option, its wrapped description joined up.
    const entries = r.stdout.split(/\n(?= {2}-)/).map((e) => e.replace(/\s+/g, ' ').trim());
    const help = entries.join(' ');
    for (const [option, value] of [
      ['--model <name>', '"xception"'], ['--dataset <name>', '"cifar10"'], ['--epochs <n>', '10'], ['--batch-size <n>', '128'],
      ['--lr <x>', '1e-3'], ['--optimizer <name>', '"adam"'], ['--amp <mode>', '"auto"'], ['--device <device>', '"auto"'],
      ['--image-size <n>', '299'], ['--resize <n>', '320'], ['--val-size <n>', '5000'], ['--seed <n>', '0'],
      ['--threads <n>', 'all cores'], ['--out <dir>', 'runs/<model>-<timestamp>'],
    ]) {
      const entry = entries.find((e) => e.startsWith(option) || e.startsWith(`-b, ${option}`));
      expect({ option, entry }).toEqual({ option, entry: expect.stringContaining(`default: ${value}`) });
    }
    expect(help).toContain('--quick');
    expect(help).toContain('--resume');
  });

  it('trains on CIFAR-10 from --data-dir (files in the real binary layout) through the real parser and split', async () => {
    const data = fs.mkdtempSync(path.join(tmp, 'cifar-'));
    const synthetic = createSyntheticDataset({ trainSize: 600, valSize: 0, testSize: 100, seed: 9 });
    await writeCifar10Binary(data, { train: synthetic.train, test: synthetic.test, classNames: synthetic.classNames });
    const out = path.join(tmp, 'cifar-run');
    const r = run(['train', '--dataset', 'cifar10', '--data-dir', data, '--val-size', '100', '--train-limit', '64',
      '--eval-limit', '32', '--image-size', '32', '--batch-size', '16', '--epochs', '1', '--device', 'cpu', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(EPOCH_LINE);
    const metrics = readJson<{ options: { dataset: string; valSize: number; trainLimit: number } }>(path.join(out, 'metrics.json'));
    expect(metrics.options).toMatchObject({ dataset: 'cifar10', valSize: 100, trainLimit: 64 });
  }, 300_000);

  it('a missing dataset exits 1 with the library error on one line and leaves no run folder', () => {
    const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
    const out = path.join(tmp, 'no-data');
    const r = run(['train', '--dataset', 'cifar10', '--data-dir', empty, '--out', out], {
      env: { XCEPTION_TORCH_CIFAR10_URL: 'http://127.0.0.1:9/x.tar.gz' },
    });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^xception-torch: error: CIFAR-10 is not available/);
    expect(r.stderr).toContain('--dataset synthetic');
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(empty)).toEqual([]);
  }, 120_000);
});

describe('xception-torch train: Ctrl-C and --resume', () => {
  it('the first SIGINT writes a checkpoint and exits 130; --resume finishes the run', async () => {
    const out = path.join(tmp, 'interrupted');
    // 160 images = 10 batches an epoch; progress comes every 5 batches, so the signal lands mid-epoch.
    const { code, signalled, stdout, stderr } = await interruptWhen(process.execPath, [CLI, 'train', '--quick', '--epochs', '3', '--train-limit', '160', '--out', out], /^epoch 1\/3 {2}batch \d+\/\d+/m);
    expect({ code, signalled, stderr }).toEqual({ code: 130, signalled: true, stderr: expect.stringContaining('stopping after this batch') });
    expect(stdout).toContain(`interrupted: checkpoint in ${path.join(out, 'checkpoints', 'last')}`);
    expect(stdout).toContain(`resume with: xception-torch train --resume --out ${out}`);
    expect(fs.existsSync(path.join(out, 'checkpoints', 'last', 'model.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'metrics.json'))).toBe(false);

    const resumed = run(['train', '--quick', '--epochs', '3', '--resume', '--out', out]);
    expect({ code: resumed.code, stderr: resumed.stderr }).toEqual({ code: 0, stderr: '' });
    expect(resumed.stdout).toMatch(/^resuming at epoch [12]\/3/m);
    expect(resumed.stdout).toMatch(/^epoch 3\/3 {2}train loss/m);
    const history = readJson<{ epochs: Array<{ epoch: number }>; options: { trainLimit: number } }>(path.join(out, 'history.json'));
    expect(history.epochs.map((e) => e.epoch)).toEqual([1, 2, 3]);
    // The train limit came from the interrupted run: --resume keeps the run's options.
    expect(history.options.trainLimit).toBe(160);
    const metrics = readJson<{ epochs: number; testAccuracy: number }>(path.join(out, 'metrics.json'));
    expect(metrics.epochs).toBe(3);
  }, 600_000);

  it('SIGTERM (a scheduler, torchrun) stops the same way: after the batch, with a checkpoint, exit 130', async () => {
    const out = path.join(tmp, 'terminated');
    const { code, signalled, stdout, stderr } = await interruptWhen(process.execPath, [CLI, 'train', '--quick', '--epochs', '2', '--train-limit', '160', '--out', out], /^epoch 1\/2 {2}batch \d+\/\d+/m, 'SIGTERM');
    expect({ code, signalled, stderr }).toEqual({ code: 130, signalled: true, stderr: expect.stringContaining('SIGTERM: stopping after this batch') });
    expect(stdout).toContain(`interrupted: checkpoint in ${path.join(out, 'checkpoints', 'last')}`);
    // The run folder is released: a resume takes it without a stale-lock warning.
    const resumed = run(['train', '--quick', '--epochs', '2', '--resume', '--out', out]);
    expect({ code: resumed.code, stderr: resumed.stderr }).toEqual({ code: 0, stderr: '' });
  }, 600_000);
});
