// `xception-torch compare`: Xception and Inception V3 (or Xception with each intermediate
// activation) side by side. Three modes: train each with the same `train` options and test it (the
// default), time training and inference steps (--throughput), or count parameters and
// multiply-accumulates (--params-only). Writes compare.json, compare.md and figures/ to the
// comparison folder, each run's own run folder beside them.
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../atomic-write';
import { findCheckpoint } from '../checkpoint';
import {
  accuracyPerMillionParameters, Comparison, ComparisonKind, ComparisonMode, ComparisonRow, measureThroughput, modelCost,
  referenceResultsFor,
} from '../compare';
import { MODEL_NAMES, ModelOptionsByName } from '../models';
import { packageVersion } from '../paths';
import { startPeakMemory } from '../peak-memory';
import { barsChart, BarMeasure, curvesChart, CurveSeries } from '../report/charts';
import { formatComparisonMarkdown, formatComparisonTable } from '../report/compare-table';
import { formatDuration } from '../report/progress';
import type { TopLevelSpec } from 'vega-lite';
import { runtimeInfo, setNumThreads } from '../runtime';
import type { EpochRecord } from '../run-files';
import { defaultRunDir, resolveTrainerOptions, ResolvedTrainerOptions } from '../trainer';
import { integer, UsageError } from './options';
import { distributedTrainerOption, launchIfRequested } from './distributed';
import { ownsRunFolder } from '../distributed/settings';
import { COMMAND_FILE, lockRunFolder, readSavedRun, SavedRun } from './run-folder';
import { applyConfigFile } from './config-file';
import { writeCompareConfig } from './run-config';
import {
  addTrainOptions, checkDevice, describeSetup, QUICK, readRunMetrics, resolveTrainSettings, savedSettings, toTrainerOptions,
  trainRun, TrainRunOptions, TrainSettings,
} from './train';
import { fixed, formatBytes } from '../report/format';

type Activation = TrainSettings['activation'];
const ACTIVATIONS: readonly Activation[] = ['none', 'relu', 'elu'];

/** --quick for a comparison: train's preset at 75x75, the smallest input Inception V3 takes (so without its aux head). */
export const COMPARE_QUICK: Readonly<Partial<TrainSettings>> = Object.freeze<Partial<TrainSettings>>({
  ...QUICK, imageSize: 75, resize: 80, auxLogits: false,
});

export const COMPARE_JSON = 'compare.json';
export const COMPARE_MD = 'compare.md';

/** 'none,relu,elu' -> ['none', 'relu', 'elu']: two or more, each once. */
function activationList(value: string): Activation[] {
  const items = value.split(',').map((s) => s.trim());
  if (items.some((a) => !ACTIVATIONS.includes(a as Activation))) {
    throw new InvalidArgumentError(`expected a comma-separated list of ${ACTIVATIONS.join(', ')}`);
  }
  if (items.length < 2 || new Set(items).size !== items.length) throw new InvalidArgumentError('expected two or more different activations');
  return items as Activation[];
}

export function addCompareOptions(cmd: Command): Command {
  addTrainOptions(cmd, {
    model: false,
    quick: COMPARE_QUICK,
    out: 'comparison folder, with a run folder per model inside (default: runs/compare-<timestamp>, or runs/compare-activations-<timestamp>)',
    resume: 'continue the training comparison in --out: finished runs are kept, an interrupted one resumes from its checkpoint',
  });
  cmd.option('--activations <list>', 'instead of the two models: Xception once per activation between depthwise and pointwise, e.g. none,relu,elu', activationList);
  cmd.addOption(new Option('--params-only', 'only parameters and multiply-accumulates per image at --image-size (nothing trained)').conflicts('throughput'));
  cmd.option('--throughput', 'instead of training: training-step and inference images/s and peak memory on --device, on a random batch of --batch-size');
  cmd.option('--steps <n>', '--throughput: timed steps of each kind', integer(1), 5);
  cmd.option('--warmup <n>', '--throughput: untimed steps first', integer(0), 2);
  cmd.option('--json', 'with --params-only or --throughput: print compare.json instead of the table');
  return cmd;
}

/** One run of the comparison: a model with the shared settings, in a folder of its own. */
interface PlannedRun {
  name: string;
  label: string;
  settings: TrainSettings;
}

/** command.json of a comparison folder: enough to resume it. */
interface CompareRecord {
  version: string;
  argv: string[];
  kind: ComparisonKind;
  mode: ComparisonMode;
  runs: Array<{ name: string; label: string; settings: TrainSettings }>;
}

const modeOf = (opts: Record<string, unknown>): ComparisonMode => (opts.paramsOnly ? 'params-only' : opts.throughput ? 'throughput' : 'train');

const modelOptionsOf = (s: TrainSettings): ModelOptionsByName[typeof s.model] => toTrainerOptions(s).modelOptions as ModelOptionsByName[typeof s.model];

function readJson<T>(file: string): T | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as Error).message}`);
  }
}

/** Quits with 130 on Ctrl-C while `work` runs (work that has nothing to checkpoint). */
async function quitOnInterrupt<T>(work: () => Promise<T>): Promise<T> {
  const onSigint = () => {
    console.error('\nxception-torch: interrupted');
    process.exit(130);
  };
  process.on('SIGINT', onSigint);
  try {
    return await work();
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Runs `compare`; resolves with the exit code (0, or 130 after Ctrl-C). */
export async function runCompare(parsed: Record<string, unknown>, cmd: Command, argv: string[]): Promise<number> {
  // -c FILE: its options under the command line's.
  const opts = cmd.getOptionValue('config') === undefined ? parsed : applyConfigFile(cmd);
  const mode = modeOf(opts);
  if (opts.json && mode === 'train') throw new UsageError('--json needs --params-only or --throughput (a training comparison writes compare.json to its folder)');
  checkActivations(opts, cmd);

  // --nproc-per-node: this process only starts the workers, each of which runs this command.
  const launched = await launchIfRequested(opts, cmd, {
    argv, defaultOut: defaultRunDir(opts.activations ? 'compare-activations' : 'compare'), quickPreset: COMPARE_QUICK,
  });
  if (launched !== undefined) return launched;

  if (opts.resume) {
    if (mode !== 'train') throw new UsageError('--resume continues a training comparison; --params-only and --throughput have nothing to resume');
    if (opts.out === undefined) throw new UsageError('--resume needs --out DIR: the comparison folder to continue');
    if (opts.activations) throw new UsageError('--resume takes the runs from the comparison in --out; leave out --activations');
  }
  const dir = opts.out !== undefined ? path.resolve(opts.out as string) : defaultRunDir(opts.activations ? 'compare-activations' : 'compare');
  // The comparison folder is locked before anything in it is read or written (each run's folder too, by trainRun).
  return lockRunFolder(dir, () => compareInFolder(dir, mode, opts, cmd, argv));
}

async function compareInFolder(dir: string, mode: ComparisonMode, opts: Record<string, unknown>, cmd: Command, argv: string[]): Promise<number> {
  let record: CompareRecord | undefined;
  if (opts.resume) {
    record = readJson<CompareRecord>(path.join(dir, COMMAND_FILE));
    if (!record?.runs || record.mode !== 'train') throw new Error(`nothing to resume: ${dir} holds no training comparison (no ${COMMAND_FILE} written by compare)`);
  } else {
    if (fs.existsSync(path.join(dir, COMPARE_JSON)) || fs.existsSync(path.join(dir, COMMAND_FILE))) {
      throw new UsageError(`${dir} already holds a comparison; continue it with --resume, or choose another --out`);
    }
  }
  const kind: ComparisonKind = record?.kind ?? (opts.activations ? 'activations' : 'models');
  const runs = await planRuns(opts, cmd, dir, kind, record);
  const activations = runs.map((r) => r.settings.activation);
  const shared = runs[0].settings;
  if (mode !== 'params-only') checkDevice(shared.device);
  if (shared.threads) setNumThreads(shared.threads);

  // Counting is quick and checks that each model takes the image size, before anything long starts.
  const costs = await quitOnInterrupt(async () => {
    const counted = [];
    for (const r of runs) {
      try {
        counted.push(await modelCost(r.settings.model, modelOptionsOf(r.settings), r.settings.imageSize));
      } catch (error) {
        if (!(error instanceof RangeError)) throw error;
        throw new UsageError(`--image-size: ${error.message}`);
      }
    }
    return counted;
  });
  const resolved = resolveTrainerOptions(toTrainerOptions(shared));
  const runtime = runtimeInfo();
  const title = kind === 'models' ? 'Xception vs Inception V3' : `Xception: activation between depthwise and pointwise (${activations.join(', ')})`;
  const comparison: Comparison = {
    kind,
    mode,
    complete: false,
    createdAt: new Date().toISOString(),
    title,
    setup: setupLine(mode, shared, resolved, opts),
    // Run folders only exist when the runs train.
    settings: Object.fromEntries(runs.map((r) => [r.name, mode === 'train' ? r.settings : { ...r.settings, out: undefined }])),
    runtime: { libtorch: runtime.libtorchVersion, device: mode === 'params-only' ? 'cpu' : String(resolved.device), threads: runtime.threads },
    rows: runs.map((r, i) => ({
      name: r.name, label: r.label, model: r.settings.model, modelOptions: modelOptionsOf(r.settings), imageSize: r.settings.imageSize, ...costs[i],
    })),
    reference: referenceResultsFor(kind, activations),
    figures: [],
  };
  // Data-parallel workers other than rank 0 train in step with it and write or print nothing.
  const owner = ownsRunFolder();
  if (!record && owner) {
    const version = packageVersion();
    await writeFileAtomic(path.join(dir, COMMAND_FILE), JSON.stringify({ version, argv, kind, mode, runs } satisfies CompareRecord, null, 2) + '\n');
  }
  // config.yaml: the options, to rerun the comparison with `compare -c` (each run folder has its own for `train -c`).
  if (owner) {
    await writeCompareConfig(dir, {
      kind, mode, shared, activations, steps: opts.steps as number | undefined, warmup: opts.warmup as number | undefined,
    }, COMPARE_QUICK);
  }

  const log = !owner ? () => undefined : opts.json ? (line: string) => console.error(line) : (line: string) => console.log(line);
  log(`comparison folder: ${dir}`);
  if (mode === 'throughput') {
    await quitOnInterrupt(() => measureRuns(runs, comparison.rows, { ...opts, resolved }, log));
  } else if (mode === 'train') {
    const finished = await trainRuns(runs, comparison, dir, { argv, device: String(resolved.device), distributed: distributedTrainerOption(opts), owner });
    if (!finished) return 130;
  }
  if (!owner) return 0;

  comparison.complete = true;
  comparison.figures = await quitOnInterrupt(() => writeFigures(comparison, runs, dir));
  const json = JSON.stringify(comparison, null, 2) + '\n';
  await writeFileAtomic(path.join(dir, COMPARE_JSON), json);
  await writeFileAtomic(path.join(dir, COMPARE_MD), formatComparisonMarkdown(comparison));
  if (opts.json) {
    process.stdout.write(json);
  } else {
    console.log('');
    console.log(formatComparisonTable(comparison));
    console.log(`\nwrote ${COMPARE_JSON}, ${COMPARE_MD} and ${comparison.figures.length} figures to ${dir}`);
  }
  return 0;
}

/** --activation and --activations exclude each other; one on the command line sets aside the other from the config file. */
function checkActivations(opts: Record<string, unknown>, cmd: Command): void {
  const [one, list] = [cmd.getOptionValueSource('activation'), cmd.getOptionValueSource('activations')];
  if (!opts.activations || !['cli', 'env', 'config'].includes(one ?? '')) return;
  // The file's --activation is what each run of an activations comparison overrides anyway.
  if (one === 'config' && list === 'cli') return;
  if (one === 'cli' && list === 'config') {
    cmd.setOptionValueWithSource('activations', undefined, 'default');
    return;
  }
  throw new UsageError('give either --activation or --activations, not both');
}

/** The runs with their settings: each from the command line over --quick over (resuming) its run or the record. */
async function planRuns(opts: Record<string, unknown>, cmd: Command, dir: string, kind: ComparisonKind, record?: CompareRecord): Promise<PlannedRun[]> {
  const source = (key: string) => cmd.getOptionValueSource(key);
  const wanted: Array<{ name: string; label: string; model: TrainSettings['model']; activation?: Activation }> = record
    ? record.runs.map((r) => ({ name: r.name, label: r.label, model: r.settings.model, activation: kind === 'activations' ? r.settings.activation : undefined }))
    : kind === 'models'
      ? MODEL_NAMES.map((model) => ({ name: model, label: model, model }))
      : (opts.activations as Activation[]).map((a) => ({ name: `xception-${a}`, label: `xception, ${a}`, model: 'xception' as const, activation: a }));
  const runs: PlannedRun[] = [];
  for (const w of wanted) {
    const out = path.join(dir, w.name);
    const saved = record ? await lastCheckpoint(out) : undefined;
    const layer = saved ? savedSettings(saved) : record?.runs.find((r) => r.name === w.name)?.settings;
    const given = { ...opts, model: w.model, ...(w.activation ? { activation: w.activation } : {}), out };
    const settings = resolveTrainSettings(given, source, layer, COMPARE_QUICK);
    runs.push({ name: w.name, label: w.label, settings: { ...settings, out } });
  }
  return runs;
}

async function lastCheckpoint(runDir: string): Promise<SavedRun | undefined> {
  const last = findCheckpoint(path.join(runDir, 'checkpoints'), 'last');
  return last ? readSavedRun(last) : undefined;
}

function setupLine(mode: ComparisonMode, s: TrainSettings, resolved: ResolvedTrainerOptions, opts: Record<string, unknown>): string {
  if (mode === 'params-only') return `${s.numClasses} classes, ${s.imageSize}x${s.imageSize} input`;
  if (mode === 'throughput') {
    const precision = resolved.amp === 'off' ? 'fp32' : `${String(resolved.amp)} autocast`;
    return `${precision} steps on a random batch of ${s.batchSize} at ${s.imageSize}x${s.imageSize}, ` +
      `${String(opts.warmup)} warm-up + ${String(opts.steps)} timed steps, ${String(resolved.device)}, ${runtimeInfo().threads} threads`;
  }
  return describeSetup(s, resolved);
}

async function measureRuns(
  runs: PlannedRun[], rows: ComparisonRow[], opts: Record<string, unknown> & { resolved: ResolvedTrainerOptions }, log: (line: string) => void,
): Promise<void> {
  for (const [i, run] of runs.entries()) {
    const s = run.settings;
    const t = await measureThroughput(s.model, modelOptionsOf(s), {
      // Precision and memory format as training uses them on this device.
      device: s.device, amp: opts.resolved.amp as 'off' | 'fp16' | 'bf16', channelsLast: opts.resolved.channelsLast, batch: s.batchSize, imageSize: s.imageSize, warmup: opts.warmup as number, steps: opts.steps as number, seed: s.seed,
      onStart: (m) => log(`[${i + 1}/${runs.length}] ${run.label}: ${m === 'train' ? 'training steps' : 'inference passes'} ...`),
    });
    const peak = t.trainPeakMemory ? `, peak ${formatBytes(t.trainPeakMemory.bytes)}` : '';
    log(`[${i + 1}/${runs.length}] ${run.label}: training ${fixed(t.trainImagesPerSecond, 1)} img/s, inference ${fixed(t.inferImagesPerSecond, 1)} img/s${peak}`);
    Object.assign(rows[i], {
      trainImagesPerSecond: t.trainImagesPerSecond, inferImagesPerSecond: t.inferImagesPerSecond,
      peakMemory: t.trainPeakMemory, inferPeakMemory: t.inferPeakMemory,
    });
  }
}

/**
 * Trains and tests each run in turn, rewriting compare.json after each. Runs that finished before
 * (--resume) are kept as they are. Resolves false after Ctrl-C, with the way to continue printed.
 */
async function trainRuns(
  runs: PlannedRun[], comparison: Comparison, dir: string,
  o: { argv: string[]; device: string; distributed: TrainRunOptions['distributed']; owner: boolean },
): Promise<boolean> {
  const previous = readJson<Comparison>(path.join(dir, COMPARE_JSON));
  const resumeCommand = `xception-torch compare --resume --out ${dir}`;
  for (const [i, run] of runs.entries()) {
    const s = run.settings;
    const out = s.out!;
    const saved = await lastCheckpoint(out);
    if (saved && saved.epoch > s.epochs) {
      throw new UsageError(`the run in ${out} has trained ${saved.epoch} epochs, more than --epochs ${s.epochs}`);
    }
    const done = saved && saved.epoch === s.epochs && fs.existsSync(path.join(out, 'metrics.json'));
    if (!o.owner) {
      if (!done && (await trainRun(s, { argv: o.argv, saved, resumeCommand: () => resumeCommand, distributed: o.distributed })).history.interrupted) return false;
      continue;
    }
    let peakMemory = previous?.rows.find((r) => r.name === run.name)?.peakMemory;
    console.log(`\n[${i + 1}/${runs.length}] ${run.label}${done ? ': finished before, kept' : ''}`);
    if (!done) {
      const probe = startPeakMemory(o.device);
      const { history } = await trainRun(s, { argv: o.argv, saved, resumeCommand: () => resumeCommand, distributed: o.distributed });
      if (history.interrupted) {
        await writeFileAtomic(path.join(dir, COMPARE_JSON), JSON.stringify(comparison, null, 2) + '\n');
        const last = findCheckpoint(path.join(out, 'checkpoints'), 'last');
        console.log(last ? `interrupted: checkpoint in ${last}` : `interrupted before the first checkpoint of ${run.label}`);
        console.log(`resume with: ${resumeCommand}`);
        return false;
      }
      peakMemory = probe.read();
    }
    const m = readRunMetrics(out);
    Object.assign(comparison.rows[i], {
      testAccuracy: m.testAccuracy, testLoss: m.testLoss, trainingSeconds: m.trainingSeconds, trainImagesPerSecond: m.imagesPerSecond,
      epochs: m.epochs, bestEpoch: m.bestEpoch, bestValAccuracy: m.bestValAccuracy, peakMemory: peakMemory ?? null,
      accuracyPerMillionParameters: accuracyPerMillionParameters(m.testAccuracy, comparison.rows[i].parameters),
    } satisfies Partial<ComparisonRow>);
    const peak = peakMemory ? `, peak ${formatBytes(peakMemory.bytes)}` : '';
    console.log(`${run.label}: test accuracy ${fixed(m.testAccuracy, 4)}, training ${formatDuration(m.trainingSeconds)}, ${fixed(m.imagesPerSecond, 1)} img/s${peak}`);
    await writeFileAtomic(path.join(dir, COMPARE_JSON), JSON.stringify(comparison, null, 2) + '\n');
  }
  return true;
}

/** The figures of the mode, as SVG and PNG in figures/; returns their paths relative to `dir`. */
async function writeFigures(c: Comparison, runs: PlannedRun[], dir: string): Promise<string[]> {
  const figures = path.join(dir, 'figures');
  const files: string[] = [];
  // The chart stack (Vega, Vega-Lite, resvg: tens of MB) loads only when figures are drawn.
  const { writeChart } = await import('../report/render-chart');
  const write = async (spec: TopLevelSpec, name: string) => {
    files.push(...(await writeChart(spec, path.join(figures, name))).map((f) => path.relative(dir, f)));
  };
  const labels = c.rows.map((r) => r.label);
  const parameters: BarMeasure = { title: 'parameters (millions)', format: '.2f', values: c.rows.map((r) => r.parameters / 1e6) };
  if (c.mode === 'train') {
    const series: CurveSeries[] = runs.map((r) => ({
      label: r.label,
      epochs: readJson<{ epochs: EpochRecord[] }>(path.join(r.settings.out!, 'history.json'))?.epochs ?? [],
    }));
    for (const [i, s] of series.entries()) await write(curvesChart([s], { title: `${s.label}: training curves` }), `curves-${runs[i].name}`);
    await write(c.kind === 'activations'
      ? curvesChart(series, { title: 'Xception: validation curves by activation between depthwise and pointwise', splits: ['validation'] })
      : curvesChart(series, { title: 'Xception vs Inception V3: training curves (validation solid, train dashed)' }), 'curves');
    await write(barsChart(labels, [parameters, { title: 'running time (s)', format: ',.1f', values: c.rows.map((r) => r.trainingSeconds ?? 0) }],
      { title: 'Parameters and running time' }), 'cost');
  } else if (c.mode === 'throughput') {
    await write(barsChart(labels, [
      parameters,
      { title: 'training images/s', format: ',.1f', values: c.rows.map((r) => r.trainImagesPerSecond ?? 0) },
      { title: 'inference images/s', format: ',.1f', values: c.rows.map((r) => r.inferImagesPerSecond ?? 0) },
    ], { title: 'Parameters and throughput' }), 'cost');
  } else {
    await write(barsChart(labels, [parameters, { title: 'GMACs per image', format: '.2f', values: c.rows.map((r) => r.macsPerImage / 1e9) }],
      { title: 'Parameters and multiply-accumulates per image' }), 'cost');
  }
  return files;
}
