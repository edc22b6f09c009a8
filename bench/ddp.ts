// Data-parallel benchmark: training images/s of Xception and Inception V3 over 2 CPU processes
// (Gloo) against PyTorch's DistributedDataParallel on the same machine, in the same run, with the
// same ranks, threads, batches and image size. fp32.
//
// With --world 1 (`npm run bench:train`) it is the single-process training epoch: ours a plain
// Trainer (no process group), PyTorch a plain loop over a DataLoader of in-memory uint8 tensors.
//
// Ours runs the path users call: --world worker processes (node, torchrun's variables, a free port)
// each running a Trainer with `distributed: 'env'` on an in-memory dataset of random uint8 images
// (crop = resize = the image size: no resize work, no flip), one epoch of warmup + steps global
// batches. Timed from the 'batch' event after the warm-up batches to the epoch's last batch (rank 0).
// PyTorch: bench/ddp_reference.py with /usr/bin/python3 (torch.multiprocessing.spawn, DDP, Adam), twice
// a repeat: in NCHW, its default, and in channels-last, the layout ours trains in by default.
//
// Exposed communication per step: ours is the native epoch's exposedCommunicationSeconds (time
// waiting, after backward, for the gradient all-reduces backward did not hide) over the epoch's
// batches, warm-up included, mean over ranks; PyTorch's is backward with DDP minus backward under
// no_sync() (see bench/ddp_reference.py). Each side reports the share of the CPUs other processes
// took while it ran; a side above --max-interference percent is run again, up to --retries times.
//
//   npm run bench:ddp -- [--models xception,inception_v3] [--size 96] [--batch 8] [--world 2]
//                        [--threads 1] [--warmup 2] [--steps N] [--probe-steps 5]
//                        [--max-interference 5] [--retries 2] [--repeats 1] [--results FILE] [--no-record] [--out FILE]
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import type { DatasetSplits, ImageSet } from '../lib/datasets';
import { freePort } from '../lib/distributed/free-port';
import type { ModelName } from '../lib/models';
import { createRng } from '../lib/random';
import { runtimeInfo } from '../lib/runtime';
import { Trainer } from '../lib/trainer';
import { cpuSnapshot, waitForIdle } from './interference';

const PYTHON = process.env.XCEPTION_TORCH_PYTHON ?? '/usr/bin/python3';
const MODELS: readonly ModelName[] = ['xception', 'inception_v3'];
/** Timed steps by default: about 20-30 s a side on this project's 2-core machine (2 x 1 thread, batch 8 per rank). */
const DEFAULT_STEPS: Record<ModelName, number> = { xception: 25, inception_v3: 40 };

interface WorkerConfig {
  model: ModelName;
  size: number;
  batch: number;  // per rank
  world: number;
  threads: number;
  warmup: number;
  steps: number;
}

interface SideResult {
  imagesPerSecond: number;
  seconds: number;
  /** Per step, mean over ranks. */
  exposedCommunicationSeconds: number;
  /** Share of the CPUs (0..1) other processes took while this side ran (start-up included). */
  othersShare: number | null;
}

const integer = (v: string) => parseInt(v, 10);

/** An image set of `count` random uint8 images, CHW each, random labels of 10 classes. */
function randomImages(count: number, size: number, seed: number): ImageSet {
  const random = createRng(seed);
  const images = new Uint8Array(count * 3 * size * size);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(random() * 256);
  const labels = Uint8Array.from({ length: count }, () => Math.floor(random() * 10));
  return { images, labels, count, channels: 3, height: size, width: size };
}

// ---- one rank of ours (run as `ddp.ts worker <json>` with torchrun's variables) ----

async function worker(config: WorkerConfig): Promise<void> {
  const { model, size, batch, world, threads, warmup, steps } = config;
  const globalBatch = batch * world;
  const batches = warmup + steps;
  const splits: DatasetSplits = {
    name: 'random',
    classNames: Array.from({ length: 10 }, (_, i) => `class${i}`),
    train: randomImages(batches * globalBatch, size, 1),
    val: randomImages(2 * world, size, 2),
    test: randomImages(2 * world, size, 3),
  };
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), `bench-ddp-${model}-`));
  const trainer = new Trainer({
    model,
    modelOptions: model === 'inception_v3' ? { numClasses: 10, auxLogits: size >= 299 } : { numClasses: 10 },
    dataset: splits,
    trainLimit: batches * globalBatch,
    epochs: 1,
    batchSize: globalBatch,
    device: 'cpu',
    amp: 'off',
    threads,
    distributed: world > 1 ? 'env' : undefined,
    preprocessing: { crop: size, resize: size, evalResize: size, flip: false },
    outDir,
  });
  let timedFrom = warmup === 0 ? 0 : NaN;
  let until = NaN;
  let exposed = NaN;
  trainer.on('batch', (e: { batch: number; seconds: number }) => {
    if (e.batch === warmup) timedFrom = e.seconds;
    if (e.batch === batches) until = e.seconds;
  });
  trainer.on('epoch', (e: { exposedCommunicationSeconds?: number }) => {
    exposed = e.exposedCommunicationSeconds ?? NaN;
  });
  try {
    await trainer.fit();
  } finally {
    trainer.dispose();
    fs.rmSync(outDir, { recursive: true, force: true });
  }
  const seconds = until - timedFrom;
  if (!(seconds > 0)) throw new Error(`rank ${trainer.rank}: no timed batches were reported (warm-up ${warmup}, steps ${steps})`);
  console.log(JSON.stringify({
    rank: trainer.rank, seconds, imagesPerSecond: (steps * globalBatch) / seconds, exposedCommunicationSeconds: exposed / batches,
  }));
}

// ---- the launcher ----

/** CPU seconds of this process's waited-for children (and theirs), from /proc/self/stat; 0 where absent. */
function childrenCpuSeconds(): number {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state); cutime and cstime are fields 16 and 17.
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return 0;
  }
}

/** Runs `run` and reports the share of the CPUs (0..1) that processes other than its children took meanwhile. */
async function withInterference<T>(run: () => Promise<T>): Promise<{ value: T; othersShare: number | null }> {
  const before = cpuSnapshot();
  const childrenBefore = childrenCpuSeconds();
  const ownBefore = process.cpuUsage();
  const value = await run();
  const after = cpuSnapshot();
  if (!before || !after) return { value, othersShare: null };
  const own = process.cpuUsage(ownBefore);
  const ours = childrenCpuSeconds() - childrenBefore + (own.user + own.system) / 1e6;
  const capacity = (after.at - before.at) * os.cpus().length;
  return { value, othersShare: capacity > 0 ? Math.max(0, after.busySeconds - before.busySeconds - ours) / capacity : 0 };
}

/** Runs a command to its end; its stdout, or an Error with its stderr. */
function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv, label: string, peers: { kill: () => void }[] = []): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    peers.push({ kill: () => child.kill('SIGTERM') });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) {
        if (stderr.trim()) process.stderr.write(stderr.split('\n').map((l) => (l ? `  ${label}: ${l}` : l)).join('\n'));
        resolve(stdout);
      } else {
        for (const p of peers) p.kill();  // a rank that failed leaves the others waiting on it
        reject(new Error(`${label} failed (exit ${code ?? signal}):\n${stderr}`));
      }
    });
  });
}

const lastJson = <T>(stdout: string): T => JSON.parse(stdout.trim().split('\n').pop() as string) as T;

async function ours(config: WorkerConfig): Promise<Omit<SideResult, 'othersShare'>> {
  const port = await freePort('127.0.0.1');
  const peers: { kill: () => void }[] = [];
  const ranks = await Promise.all(Array.from({ length: config.world }, (_, rank) => {
    const env = {
      ...process.env,
      RANK: String(rank), WORLD_SIZE: String(config.world), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(config.world),
      MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port),
      TS_NODE_TRANSPILE_ONLY: 'true',  // type-checked by the launcher's ts-node already
    };
    return runProcess(process.execPath, ['-r', 'ts-node/register', __filename, 'worker', JSON.stringify(config)], env, `ours ${config.model} rank ${rank}`, peers)
      .then((out) => lastJson<{ rank: number; seconds: number; imagesPerSecond: number; exposedCommunicationSeconds: number }>(out));
  }));
  return {
    imagesPerSecond: ranks[0].imagesPerSecond,
    seconds: ranks[0].seconds,
    exposedCommunicationSeconds: ranks.reduce((a, r) => a + r.exposedCommunicationSeconds, 0) / ranks.length,
  };
}

/** PyTorch's side, in its default NCHW layout or in channels-last (the layout ours trains in). */
async function pytorch(config: WorkerConfig, probeSteps: number, channelsLast: boolean): Promise<Omit<SideResult, 'othersShare'>> {
  const args = [path.join(__dirname, 'ddp_reference.py'), '--model', config.model, '--size', String(config.size), '--batch', String(config.batch),
    '--world', String(config.world), '--threads', String(config.threads), '--warmup', String(config.warmup), '--steps', String(config.steps),
    '--probe-steps', String(probeSteps)];
  if (config.model === 'inception_v3' && config.size >= 299) args.push('--aux');
  if (channelsLast) args.push('--channels-last');
  return lastJson<SideResult>(await runProcess(PYTHON, args, process.env, `PyTorch ${config.model}`));
}

/** A side, run again while other processes took more than `maxShare` of the CPUs (up to `retries` times). */
async function guarded(label: string, run: () => Promise<Omit<SideResult, 'othersShare'>>, maxShare: number, retries: number): Promise<SideResult> {
  for (let attempt = 0; ; attempt++) {
    await waitForIdle(maxShare, 5 * 60_000);
    const { value, othersShare } = await withInterference(run);
    const result = { ...value, othersShare };
    if (othersShare === null || othersShare <= maxShare || attempt >= retries) return result;
    console.error(`${label}: other processes took ${(100 * othersShare).toFixed(0)}% of the CPUs meanwhile; measuring again`);
  }
}

/** The run with the median images/s (the upper one of an even count). */
function medianRun(runs: SideResult[]): SideResult {
  const sorted = [...runs].sort((a, b) => a.imagesPerSecond - b.imagesPerSecond);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The CPU's model name from /proc/cpuinfo (os.cpus() elsewhere). */
function cpuModel(): string {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('model name'));
    if (line) return line.slice(line.indexOf(':') + 1).trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown CPU';
}

async function main(): Promise<void> {
  const opts = new Command('bench:ddp')
    .option('--models <list>', 'comma-separated: xception, inception_v3', MODELS.join(','))
    .option('--size <n>', 'image size (Inception V3 trains its aux head from 299)', integer, 96)
    .option('--batch <n>', 'batch per rank (the global batch is this times --world)', integer, 8)
    .option('--world <n>', 'processes (ranks)', integer, 2)
    .option('--threads <n>', 'CPU threads per rank', integer, 1)
    .option('--warmup <n>', 'untimed steps first', integer, 2)
    .option('--steps <n>', `timed steps (default ${MODELS.map((m) => `${m} ${DEFAULT_STEPS[m]}`).join(', ')})`, integer)
    .option('--probe-steps <n>', "PyTorch's no_sync() backward steps, for its exposed communication", integer, 5)
    .option('--max-interference <percent>', 'rerun a side when other processes took more of the CPUs', parseFloat, 5)
    .option('--retries <n>', 'reruns of a disturbed side at most', integer, 2)
    .option('--repeats <n>', 'runs of each side, alternating; the median is kept', integer, 1)
    .option('--results <file>', 'the file to append the results to', path.join(__dirname, 'RESULTS.md'))
    .option('--no-record', 'do not append to the results file')
    .option('--out <file>', 'write the results as JSON')
    .parse(process.argv)
    .opts();
  const models = String(opts.models).split(',').map((m) => m.trim()).filter(Boolean);
  for (const m of models) if (!MODELS.includes(m as ModelName)) throw new Error(`unknown model ${m}; use ${MODELS.join(', ')}`);
  for (const key of ['size', 'batch', 'world', 'threads', 'warmup', 'probeSteps', 'retries', 'repeats'] as const) {
    if (!(Number.isSafeInteger(opts[key]) && opts[key] >= (key === 'warmup' || key === 'retries' ? 0 : 1))) throw new Error(`--${key} must be a positive integer`);
  }
  if (opts.steps !== undefined && !(Number.isSafeInteger(opts.steps) && opts.steps >= 1)) throw new Error('--steps must be a positive integer');
  const guard = { maxShare: opts.maxInterference / 100, retries: opts.retries };
  const rows = [];
  for (const model of models as ModelName[]) {
    const config: WorkerConfig = {
      model, size: opts.size, batch: opts.batch, world: opts.world, threads: opts.threads, warmup: opts.warmup, steps: opts.steps ?? DEFAULT_STEPS[model],
    };
    // The sides alternate, --repeats times; each keeps its median run (this machine's speed drifts).
    // PyTorch runs twice a repeat: NCHW, its default, and channels-last, the layout ours trains in (faster for
    // PyTorch too on some models); the verdict is against the faster of the two.
    const runs: { ours: SideResult[]; pytorch: SideResult[]; pytorchChannelsLast: SideResult[] } = { ours: [], pytorch: [], pytorchChannelsLast: [] };
    for (let r = 0; r < opts.repeats; r++) {
      const o = await guarded(`ours ${model}`, () => ours(config), guard.maxShare, guard.retries);
      const p = await guarded(`PyTorch ${model}`, () => pytorch(config, opts.probeSteps, false), guard.maxShare, guard.retries);
      const c = await guarded(`PyTorch ${model} channels-last`, () => pytorch(config, opts.probeSteps, true), guard.maxShare, guard.retries);
      console.error(`${model} run ${r + 1}: ours ${o.imagesPerSecond.toFixed(2)} img/s, PyTorch ${p.imagesPerSecond.toFixed(2)} img/s, ` +
        `PyTorch channels-last ${c.imagesPerSecond.toFixed(2)} img/s`);
      runs.ours.push(o);
      runs.pytorch.push(p);
      runs.pytorchChannelsLast.push(c);
    }
    const o = medianRun(runs.ours);
    const p = medianRun(runs.pytorch);
    const c = medianRun(runs.pytorchChannelsLast);
    rows.push({
      model, steps: config.steps, ours: o, pytorch: p, pytorchChannelsLast: c,
      ratio: o.imagesPerSecond / p.imagesPerSecond, ratioChannelsLast: o.imagesPerSecond / c.imagesPerSecond,
      ratioToFaster: o.imagesPerSecond / Math.max(p.imagesPerSecond, c.imagesPerSecond),
    });
  }
  const result = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${cpuModel()}, ${os.cpus().length} cores`,
    libtorch: runtimeInfo().libtorchVersion,
    // bench:train is this script with --world 1 --threads 2 --repeats 3: the full argument list says which.
    command: `npm run bench:ddp${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    settings: {
      size: opts.size, batchPerRank: opts.batch, world: opts.world, threadsPerRank: opts.threads, warmup: opts.warmup, probeSteps: opts.probeSteps,
      precision: 'fp32', backend: opts.world > 1 ? 'gloo' : 'none', maxInterferencePercent: opts.maxInterference, retries: opts.retries,
      repeats: opts.repeats,
    },
    rows,
  };
  const ms = (s: number) => (1000 * s).toFixed(0);
  const share = (s: number | null) => (s === null ? '?' : `${(100 * s).toFixed(0)}%`);
  const header = '| model | steps | ours img/s (channels-last) | PyTorch img/s, NCHW / channels-last | ours / PyTorch, NCHW / channels-last | ours / faster PyTorch | ' +
    'exposed comm. per step, ours / PyTorch NCHW / channels-last (ms) | others\' CPU share, ours / PyTorch NCHW / channels-last |';
  const lines = [header, '|---|---|---|---|---|---|---|---|', ...rows.map((r) =>
    `| ${r.model} | ${r.steps} | ${r.ours.imagesPerSecond.toFixed(2)} | ${r.pytorch.imagesPerSecond.toFixed(2)} / ${r.pytorchChannelsLast.imagesPerSecond.toFixed(2)} | ` +
    `${r.ratio.toFixed(2)} / ${r.ratioChannelsLast.toFixed(2)} | ${r.ratioToFaster.toFixed(2)} | ` +
    `${ms(r.ours.exposedCommunicationSeconds)} / ${ms(r.pytorch.exposedCommunicationSeconds)} / ${ms(r.pytorchChannelsLast.exposedCommunicationSeconds)} | ` +
    `${share(r.ours.othersShare)} / ${share(r.pytorch.othersShare)} / ${share(r.pytorchChannelsLast.othersShare)} |`)];
  console.log(lines.join('\n'));
  if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  if (opts.record) {
    const file = path.resolve(opts.results);
    let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n';
    if (opts.world === 1 && !text.includes('## Training epochs (`npm run bench:train`)')) {
      text += `
## Training epochs (\`npm run bench:train\`)

fp32 on the CPU, one process a side, the same threads. Ours: a \`Trainer\` (what \`train\` runs) over an
in-memory dataset of random uint8 images (crop = resize = the image size, no flip: the native loop normalises
each batch), timed from the batch after the warm-up to the epoch's last. PyTorch: \`bench/ddp_reference.py
--world 1\` in \`/usr/bin/python3\`, a \`DataLoader\` (shuffled, batch size as ours) over a \`TensorDataset\` of
in-memory uint8 images, normalised in the step, cross-entropy, Adam, the same models (\`test/oracle/parity.py\`'s
\`build()\`). The exposed-communication column is 0 by construction (one process).
`;
    }
    if (opts.world > 1 && !text.includes('## Data-parallel training (`npm run bench:ddp`)')) {
      text += `
## Data-parallel training (\`npm run bench:ddp\`)

fp32 on the CPU, Gloo, each side's ranks in processes of their own. Ours: worker processes with torchrun's
variables, each a \`Trainer({ distributed: 'env' })\` over an in-memory dataset of random uint8 images (crop =
resize = the image size, no flip), timed from the batch after the warm-up to the epoch's last. PyTorch:
\`bench/ddp_reference.py\` in \`/usr/bin/python3\`, \`torch.multiprocessing.spawn\`, \`DistributedDataParallel\`
(25 MB buckets), Adam, the same models (\`test/oracle/parity.py\`'s \`build()\`), batches and normalisation.
images/s are global (all ranks). Exposed communication per step: ours, the time each rank waited after backward
for the all-reduces backward did not hide (warm-up steps included, mean over ranks); PyTorch, backward with
DDP's all-reduce minus backward under \`no_sync()\` (mean over ranks).
`;
    }
    const threads = `${opts.threads} thread${opts.threads === 1 ? '' : 's'}`;
    const setup = opts.world === 1 ? `1 process x ${threads}, ${opts.size}x${opts.size}, batch ${opts.batch}`
      : `${opts.world} ranks x ${threads}, ${opts.size}x${opts.size}, batch ${opts.batch} per rank (${opts.batch * opts.world} global)`;
    const medians = opts.repeats > 1 ? `; medians of ${opts.repeats} alternating runs` : '';
    text += `\n### ${result.date}: ${setup}\n\n` +
      `Machine: ${result.machine}, libtorch ${result.libtorch}. Command: \`${result.command}\` (warm-up: ${opts.warmup} step${opts.warmup === 1 ? '' : 's'}${medians}).\n\n` +
      lines.join('\n') + '\n';
    fs.writeFileSync(file, text);
    console.error(`appended to ${file}`);
  }
}

if (process.argv[2] === 'worker') {
  worker(JSON.parse(process.argv[3]) as WorkerConfig).catch((error: Error) => {
    console.error(error.stack ?? error.message);
    process.exit(1);
  });
} else {
  main().catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
