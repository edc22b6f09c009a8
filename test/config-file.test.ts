// `-c FILE` / `--config FILE` and the run folder's config.yaml: in process, how a file's options
// merge with the command line's (keys in both spellings, the flags' own parsers, the command line
// winning, JSON too, clear errors) and that the written options resolve back to the same settings;
// through the compiled CLI (dist/lib/cli.js), errors as one line with exit code 2, and a tiny run
// rerun from its config.yaml to the same options and numbers (CPU runs are deterministic).
import { spawnSync } from 'child_process';
import { Command } from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addCompareOptions } from '../lib/commands/compare';
import { applyConfigFile, closestKey, CONFIG_FILE, formatConfigFile } from '../lib/commands/config-file';
import { UsageError } from '../lib/commands/options';
import { trainConfigEntries } from '../lib/commands/run-config';
import { addTrainOptions, QUICK, resolveTrainSettings, toTrainerOptions, TrainSettings } from '../lib/commands/train';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-config-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let files = 0;
/** A config file with this text; its name ends in `ext`. */
function configFile(text: string, ext = 'yaml'): string {
  const file = path.join(tmp, `config-${(files += 1)}.${ext}`);
  fs.writeFileSync(file, text);
  return file;
}

/** `train` (or `compare`) parsed as commander does, with the config file merged as the command does. */
function parse(args: string[], command: 'train' | 'compare' = 'train'): { cmd: Command; opts: Record<string, unknown> } {
  const cmd = new Command(command).exitOverride().configureOutput({ writeErr: () => undefined });
  (command === 'train' ? addTrainOptions : addCompareOptions)(cmd);
  cmd.parse(args, { from: 'user' });
  return { cmd, opts: applyConfigFile(cmd) };
}

function settings(args: string[], saved?: Partial<TrainSettings>): TrainSettings {
  const { cmd, opts } = parse(args);
  return resolveTrainSettings(opts, (key) => cmd.getOptionValueSource(key), saved);
}

/** The UsageError message the arguments give (fails when they give none). */
function usageError(args: string[], command: 'train' | 'compare' = 'train'): string {
  try {
    parse(args, command);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return (error as Error).message;
  }
  throw new Error(`no error for ${args.join(' ')}`);
}

/** commander's message for a flag, to compare with the file's (the same parser must say the same). */
function flagError(args: string[]): string {
  try {
    parse(args);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`no error for ${args.join(' ')}`);
}

describe('-c FILE: options from a YAML or JSON file', () => {
  it('takes kebab-case and camelCase keys through the flags\' parsers; the command line wins', () => {
    const file = configFile('model: inception_v3\nbatch-size: 32\nlr: 5e-4\nimageSize: 96\nno-aux-logits: true\nepochs: 4\nschedule: cosine\n');
    const { cmd, opts } = parse(['-c', file, '--epochs', '2', '--lr', '1e-2']);
    expect(opts).toMatchObject({ model: 'inception_v3', batchSize: 32, lr: 1e-2, imageSize: 96, auxLogits: false, epochs: 2, schedule: 'cosine' });
    expect(['epochs', 'lr', 'batchSize', 'auxLogits', 'seed'].map((k) => cmd.getOptionValueSource(k))).toEqual(['cli', 'cli', 'config', 'config', 'default']);
    // A crop from the file counts as given: the resize follows it, as it follows --image-size.
    expect(settings(['-c', file])).toMatchObject({ imageSize: 96, resize: 102, lr: 5e-4, auxLogits: false });
  });

  it('beats --quick\'s presets and a resumed run\'s options; null leaves an option as it was', () => {
    const file = configFile('epochs: 5\ndevice: cpu\nseed: null\n');
    expect(settings(['--quick', '-c', file])).toMatchObject({ epochs: 5, batchSize: 16, imageSize: 32, seed: 0 });
    expect(settings(['--resume', '--out', 'x', '-c', file], { epochs: 3, batchSize: 8 })).toMatchObject({ epochs: 5, batchSize: 8 });
    expect(settings(['--resume', '--out', 'x', '-c', file, '--epochs', '7'], { epochs: 3 })).toMatchObject({ epochs: 7 });
  });

  it('reads JSON, and boolean keys either way round (aux-logits: false, no-aux-logits: true)', () => {
    const json = configFile('{"batchSize": 8, "aux-logits": false, "quick": true, "fused-adam": false}', 'json');
    expect(parse(['-c', json]).opts).toMatchObject({ batchSize: 8, auxLogits: false, quick: true, fusedAdam: false });
    expect(parse(['-c', configFile('no-fused-adam: false\n')]).opts.fusedAdam).toBe(true);
    // An empty file sets nothing.
    expect(parse(['-c', configFile('')]).opts).toMatchObject({ epochs: 10, batchSize: 128 });
  });

  it('compare: a list for --activations, and options that exclude each other', () => {
    expect(parse(['-c', configFile('activations: [none, elu]\nsteps: 3\n')], 'compare').opts).toMatchObject({ activations: ['none', 'elu'], steps: 3 });
    expect(usageError(['-c', configFile('activations: [none]\n')], 'compare')).toMatch(/activations: \["none"\] is invalid: expected two or more different activations/);
    expect(usageError(['-c', configFile('params-only: true\n'), '--throughput'], 'compare'))
      .toMatch(/option '--params-only' cannot be used with option '--throughput'/);
    expect(usageError(['-c', configFile('model: xception\n')], 'compare')).toMatch(/unknown option 'model'; the options of compare: /);
  });

  it('an unknown key names the key, the file and the known keys, with the closest one', () => {
    const file = configFile('epochs: 1\nbatch_size: 16\n');
    const message = usageError(['-c', file]);
    expect(message).toContain(`config file ${file}: unknown option 'batch_size' (did you mean 'batch-size'?)`);
    expect(message).toMatch(/the options of train: model, dataset, data-dir, epochs, batch-size, .*, seed, .*/);
    expect(usageError(['-c', configFile('lerning-rate: 1\n')])).not.toContain('did you mean');
    expect(usageError(['-c', configFile('imagesize: 1\n')])).toContain("did you mean 'image-size'?");
    expect(usageError(['-c', configFile('config: other.yaml\n')])).toContain("a config file cannot name another 'config'");
    expect(closestKey('sead', ['seed', 'epochs'])).toBe('seed');
  });

  it('a bad value fails with the message of the flag\'s own validator', () => {
    for (const [key, value, flag] of [
      ['epochs', '0', '--epochs'], ['batch-size', '1', '--batch-size'], ['lr', '-1', '--lr'], ['amp', 'fp8', '--amp'],
      ['device', 'gpu', '--device'], ['image-size', '4096', '--image-size'], ['label-smoothing', '1', '--label-smoothing'], ['out', "''", '--out'],
    ]) {
      const message = usageError(['-c', configFile(`${key}: ${value}\n`)]);
      const why = flagError([flag, value === "''" ? '' : value]).replace(/^.* is invalid\. /, '');
      expect({ key, message }).toEqual({ key, message: expect.stringMatching(new RegExp(`: ${key}: .* is invalid: `)) });
      expect({ key, why: message.slice(message.indexOf(' is invalid: ') + 13) }).toEqual({ key, why });
    }
    expect(usageError(['-c', configFile('quick: yes\n')])).toMatch(/quick: "yes" is invalid: expected true or false/);
    expect(usageError(['-c', configFile('epochs: [1, 2]\n')])).toMatch(/epochs: \[1,2\] is invalid/);
    expect(usageError(['-c', configFile('data-dir: true\n')])).toMatch(/data-dir: true is invalid: expected a value for --data-dir <dir>/);
    expect(usageError(['-c', configFile('batchSize: 8\nbatch-size: 8\n')])).toMatch(/'batchSize' and 'batch-size' set the same option/);
  });

  it('a missing, unreadable or malformed file is a usage error naming it', () => {
    expect(usageError(['-c', path.join(tmp, 'none.yaml')])).toBe(`cannot read the config file ${path.join(tmp, 'none.yaml')}: it does not exist`);
    expect(usageError(['-c', tmp])).toBe(`cannot read the config file ${tmp}: it is a folder`);
    expect(usageError(['-c', configFile('epochs: [1\nseed: 2\n')])).toMatch(/is not valid YAML or JSON: .* at line 2, column 1$/);
    expect(usageError(['-c', configFile('epochs: 1\nepochs: 2\n')])).toMatch(/Map keys must be unique at line 2/);
    expect(usageError(['-c', configFile('- epochs\n')])).toMatch(/must map option names to values \(batch-size: 64\); got a list/);
    expect(usageError(['-c', configFile('{"epochs": 1', 'json')])).toMatch(/is not valid YAML or JSON/);
  });
});

describe('config.yaml: the resolved options, which resolve back to the same run', () => {
  /** The settings from the config.yaml that `args` would write (written, then read back with -c). */
  const roundTrip = (s: TrainSettings) => settings(['-c', configFile(formatConfigFile(['header'], trainConfigEntries(s, QUICK)))]);
  // What config.yaml leaves out (the folder, the threads); paths it writes absolute.
  const comparable = (s: TrainSettings) => {
    const o = toTrainerOptions(s);
    return { ...o, outDir: undefined, threads: undefined, dataDir: o.dataDir && path.resolve(o.dataDir), initWeights: o.initWeights && path.resolve(o.initWeights) };
  };

  it.each([
    [['--quick']],
    [['--quick', '--val-size', '32', '--epochs', '1', '--train-limit', '64']],
    [['--dataset', 'synthetic']],
    [['--dataset', 'synthetic', '--val-size', '64', '--image-size', '48']],
    [['--model', 'inception_v3', '--image-size', '96', '--no-aux-logits', '--lr', '3e-4', '--schedule', 'cosine', '--label-smoothing', '0.1', '--optimizer', 'adamw', '--weight-decay', '0.05']],
    [['--data-dir', 'rel/data', '--init-weights', 'w.safetensors', '--no-fused-adam', '--amp', 'bf16', '--device', 'cuda:1', '--val-size', '1000', '--eval-limit', '100']],
    [['--quick', '--dataset', 'cifar10', '--activation', 'elu', '--variant', 'notebook', '--num-classes', '100', '--aux-weight', '0']],
    [['--quick', '--resume', '--out', 'x', '--threads', '1', '--nproc-per-node', '2', '--seed', '7']],
  ])('%j', (args) => {
    const original = settings(args);
    const again = roundTrip(original);
    expect(comparable(again)).toEqual(comparable(original));
    // Written once more, the file is the same: a rerun's config.yaml equals the run's.
    expect(trainConfigEntries(again, QUICK)).toEqual(trainConfigEntries(original, QUICK));
  });

  it('a resumed quick run keeps its synthetic set; the folder, --resume and --threads are not written', () => {
    const saved: Partial<TrainSettings> = { dataset: 'synthetic', epochs: 3, imageSize: 32, resize: 36, batchSize: 16, synthetic: { ...QUICK.synthetic } };
    const original = settings(['--resume', '--out', 'x', '--epochs', '6', '--threads', '2'], saved);
    expect(comparable(roundTrip(original))).toEqual(comparable(original));
    const keys = trainConfigEntries(original, QUICK).map((e) => e.key);
    expect(keys).toEqual(expect.arrayContaining(['quick', 'model', 'dataset', 'epochs', 'batch-size', 'lr', 'seed', 'device', 'amp', 'image-size']));
    for (const key of ['out', 'resume', 'threads', 'nproc-per-node', 'config', 'val-size']) expect({ key, written: keys.includes(key) }).toEqual({ key, written: false });
  });
});

describe('xception-torch train -c (dist/lib/cli.js)', () => {
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: tmp, env: { ...process.env, ...env } });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;

  it('a bad config file: one line, exit code 2, no stack trace, nothing written', () => {
    const out = path.join(tmp, 'never');
    for (const args of [
      ['train', '-c', path.join(tmp, 'missing.yaml')],
      ['train', '--config', configFile('epochs: [1\n')],
      ['train', '-c', configFile('epochs: 1\nbatchsize: 16\n')],
      ['train', '-c', configFile('{"epochs": 0}', 'json')],
      ['compare', '-c', configFile('model: xception\n')],
    ]) {
      const r = run([...args, '--out', out]);
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 2, stdout: '' });
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^xception-torch: error: .*config file/)]);
    }
    expect(fs.existsSync(out)).toBe(false);
  });

  describe('a tiny run, rerun from its config.yaml', () => {
    const first = path.join(tmp, 'first');
    const again = path.join(tmp, 'again');
    let results: Array<ReturnType<typeof run>>;
    beforeAll(() => {
      results = [run(['train', '--quick', '--train-limit', '32', '--eval-limit', '16', '--epochs', '1', '--seed', '3', '--lr', '2e-3', '--out', first])];
      results.push(run(['train', '-c', path.join(first, CONFIG_FILE), '--out', again]));
    }, 600_000);

    it('both train; the folder holds config.yaml, with how to rerun it', () => {
      for (const r of results) expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(fs.readdirSync(first)).toContain(CONFIG_FILE);
      const text = fs.readFileSync(path.join(first, CONFIG_FILE), 'utf8');
      expect(text).toContain(`#   xception-torch train -c ${path.join(first, CONFIG_FILE)} --out NEW_FOLDER`);
      expect(text).toMatch(/^quick: true #/m);
      for (const line of ['epochs: 1', 'lr: 0.002', 'seed: 3', 'train-limit: 32', 'device: cpu', 'amp: "off"']) expect(text).toContain(`\n${line}\n`);
      expect(text).not.toMatch(/^(out|resume|threads):/m);
    });

    it('the rerun has the same options and the same numbers', () => {
      const config = (dir: string) => fs.readFileSync(path.join(dir, CONFIG_FILE), 'utf8').split(dir).join('RUN');
      expect(config(again)).toBe(config(first));
      type History = { options: Record<string, unknown>; epochs: Array<Record<string, number>> };
      const [a, b] = [first, again].map((dir) => readJson<History>(path.join(dir, 'history.json')));
      expect({ ...b.options, outDir: undefined }).toEqual({ ...a.options, outDir: undefined });
      // Everything of each epoch but its timings.
      const numbers = (h: History) => h.epochs.map((e) => ({ ...e, seconds: 0, imagesPerSecond: 0 }));
      expect(numbers(b)).toEqual(numbers(a));
      const metrics = (dir: string) => {
        const m = readJson<Record<string, unknown>>(path.join(dir, 'metrics.json'));
        return { testAccuracy: m.testAccuracy, testLoss: m.testLoss, bestValAccuracy: m.bestValAccuracy, perClassAccuracy: m.perClassAccuracy };
      };
      expect(metrics(again)).toEqual(metrics(first));
    });

    it('a flag given with -c wins over the file (--dataset cifar10 over its synthetic set)', () => {
      const empty = fs.mkdtempSync(path.join(tmp, 'no-cifar-'));
      const out = path.join(tmp, 'cifar');
      const r = run(['train', '-c', path.join(first, CONFIG_FILE), '--dataset', 'cifar10', '--data-dir', empty, '--out', out],
        { XCEPTION_TORCH_CIFAR10_URL: 'http://127.0.0.1:9/x.tar.gz' });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^xception-torch: error: CIFAR-10 is not available/);
      expect(r.stdout).toMatch(/^training xception .* on cifar10 \(train limit 32, eval limit 16\): 32x32 crops .* lr 0\.002, cpu, amp off, seed 3$/m);
    }, 120_000);
  });

  it('--nproc-per-node: threads from the file reach each worker (the launcher\'s cores / N is only a default)', () => {
    // 2 ranks on this 2-core machine would each get 1 thread by default; the file asks for 2.
    const out = path.join(tmp, 'ddp-threads');
    const file = configFile('quick: true\nthreads: 2\nepochs: 1\ntrain-limit: 16\neval-limit: 8\nbatch-size: 4\n');
    const r = run(['train', '-c', file, '--nproc-per-node', '2', '--out', out]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const metrics = readJson<{ runtime: { threads: number; worldSize: number } }>(path.join(out, 'metrics.json'));
    expect(metrics.runtime).toMatchObject({ threads: 2, worldSize: 2 });
  }, 300_000);

  it('compare --params-only writes config.yaml; compare -c reruns it to the same comparison', () => {
    const [a, b] = [path.join(tmp, 'cmp-a'), path.join(tmp, 'cmp-b')];
    expect(run(['compare', '--params-only', '--image-size', '100', '--no-aux-logits', '--num-classes', '20', '--out', a]).code).toBe(0);
    const text = fs.readFileSync(path.join(a, CONFIG_FILE), 'utf8');
    expect(text).toContain(`#   xception-torch compare -c ${path.join(a, CONFIG_FILE)} --out NEW_FOLDER`);
    expect(text).toMatch(/^params-only: true$/m);
    expect(text).not.toMatch(/^model:/m);
    expect(run(['compare', '-c', path.join(a, CONFIG_FILE), '--out', b]).code).toBe(0);
    expect(fs.readFileSync(path.join(b, CONFIG_FILE), 'utf8').split(b).join('DIR')).toBe(text.split(a).join('DIR'));
    type Rows = { rows: Array<Record<string, unknown>> };
    expect(readJson<Rows>(path.join(b, 'compare.json')).rows).toEqual(readJson<Rows>(path.join(a, 'compare.json')).rows);
  }, 120_000);
});
