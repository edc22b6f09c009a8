// Data-parallel training on c10d (Gloo, 2 processes on this machine), checked against PyTorch's own
// engine: the shards equal torch.utils.data.DistributedSampler's, 2-rank training ends with the
// weights PyTorch's DistributedDataParallel reaches from the same weights and batches, the
// all-reduced evaluation equals one process's, and both launch forms (ours and PyTorch's launcher)
// train the same run.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../lib/native';
import { freePort } from '../lib/distributed/free-port';
import { findCheckpoint, modelFile, readCheckpointState } from '../lib/checkpoint';
import { PYTHON, requirePythonTorch } from './helpers/python';
import { readTensors, relativeDifference } from './helpers/tensors';

jest.setTimeout(600_000);

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const DDP_ORACLE = path.join(__dirname, 'oracle', 'ddp.py');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-ddp-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function ddpOracle<T>(args: string[]): T {
  requirePythonTorch();
  const r = spawnSync(PYTHON, [DDP_ORACLE, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`ddp.py ${args[0]} failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

interface Exit { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Starts a process with its output collected as it comes; `exited` settles when it has closed. */
function start(command: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = tmp) {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (output.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output.stderr += d.toString()));
  const exited = new Promise<Exit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, ...output }));
  });
  return { child, output, exited };
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}, cwd = tmp): Promise<Exit> {
  return start(command, args, env, cwd).exited;
}

/** Relative difference of two tensors as whole vectors: |a - b| / |b| (0 when both are 0). */
describe('sharding', () => {
  it.each([[11, 2], [11, 3], [12, 4], [3, 4], [10, 2], [50, 3]])('%i images over %i ranks: DistributedSampler\'s indices', (size, world) => {
    const { order, ranks } = ddpOracle<{ order: number[]; ranks: number[][] }>(['sampler', '--size', String(size), '--world', String(world), '--seed', '7', '--epoch', '2']);
    for (let rank = 0; rank < world; rank++) {
      expect(Array.from(native().shardIndices(Int32Array.from(order), rank, world))).toEqual(ranks[rank]);
    }
  });

  it('refuses a rank outside the world', () => {
    expect(() => native().shardIndices(Int32Array.from([0, 1, 2]), 2, 2)).toThrow(/rank must be in/);
  });
});

// A worker of the parity runs: a Trainer with distributed 'env' on images the test wrote, no
// augmentation (crop = resize = image size, no flip), so that PyTorch can be given the same batches.
const WORKER = `
const fs = require('fs');
const path = require('path');
const { Trainer } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'index.js'))});
(async () => {
  const c = JSON.parse(process.env.XT_CASE);
  const rank = Number(process.env.RANK);
  const images = new Uint8Array(fs.readFileSync(path.join(c.dir, 'images.u8')));
  const labels = new Uint8Array(fs.readFileSync(path.join(c.dir, 'labels.u8')));
  const set = { images, labels, count: labels.length, channels: 3, height: c.size, width: c.size };
  const classNames = Array.from({ length: 10 }, (_, i) => 'class ' + i);
  const trainer = new Trainer({
    model: c.model, modelOptions: c.modelOptions, dataset: { name: 'parity', classNames, train: set, val: set, test: set },
    epochs: 1, batchSize: c.batch, optimizer: { lr: c.lr }, device: 'cpu', threads: 1, seed: 0, outDir: c.out,
    preprocessing: { crop: c.size, resize: c.size, evalResize: c.size, flip: false }, distributed: 'env',
    channelsLast: c.channelsLast,
  });
  const model = await trainer.getModel();
  if (rank === 0) await model.saveSafetensors(path.join(c.dir, 'initial.safetensors'));
  fs.writeFileSync(path.join(c.dir, 'indices-' + rank + '.json'), JSON.stringify(Array.from(await trainer.epochIndices(0))));
  await trainer.fit();
  const val = await trainer.evaluate('val');
  fs.writeFileSync(path.join(c.dir, 'eval-' + rank + '.json'), JSON.stringify(val));
  trainer.dispose();
})().catch((e) => { console.error(e); process.exit(1); });
`;

async function trainTwoRanks(c: {
  dir: string; out: string; model: string; modelOptions: object; size: number; batch: number; lr: number; channelsLast: boolean;
}): Promise<void> {
  const port = await freePort('127.0.0.1');
  const workers = [0, 1].map((rank) => run(process.execPath, ['-e', WORKER], {
    XT_CASE: JSON.stringify(c), RANK: String(rank), WORLD_SIZE: '2', LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: '2',
    MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port),
  }));
  const exits = await Promise.all(workers);
  for (const e of exits) expect({ code: e.code, stderr: e.stderr }).toEqual({ code: 0, stderr: '' });
}

/** Deterministic pseudo-random images with labels that depend on them a little. */
function writeImages(dir: string, count: number, size: number): void {
  const images = new Uint8Array(count * 3 * size * size);
  let state = 12345;
  for (let i = 0; i < images.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    images[i] = state >>> 24;
  }
  const labels = Uint8Array.from({ length: count }, (_, i) => (i * 7) % 10);
  fs.writeFileSync(path.join(dir, 'images.u8'), images);
  fs.writeFileSync(path.join(dir, 'labels.u8'), labels);
}

type Tensors = Map<string, Float32Array | Float64Array | BigInt64Array>;

/** PyTorch DDP (test/oracle/ddp.py) from our initial weights on the shards our run trained, in either layout. */
async function pytorchDdp(c: { dir: string; model: string; modelOptions: object; size: number; batch: number; lr: number; channelsLast: boolean }): Promise<Tensors> {
  const port = await freePort('127.0.0.1');
  ddpOracle(['train', '--model', c.model, '--options', JSON.stringify(c.modelOptions), '--dir', c.dir, '--world', '2',
    '--batch', String(c.batch), '--lr', String(c.lr), '--seed', '0', '--size', String(c.size), '--port', String(port),
    ...(c.channelsLast ? ['--channels-last'] : [])]);
  return readTensors(path.join(c.dir, 'python.safetensors'));
}

/** Our 2-rank run (6 Adam steps of 4 images a rank) after checking its shards are DistributedSampler's. */
async function ours2Ranks(c: { model: string; modelOptions: object; size: number; channelsLast: boolean }) {
  const dir = fs.mkdtempSync(path.join(tmp, `${c.model}-`));
  const run = { ...c, dir, out: path.join(dir, 'run'), count: 48, batch: 8, lr: 1e-3 };
  writeImages(dir, run.count, c.size);
  await trainTwoRanks(run);
  const { ranks } = ddpOracle<{ ranks: number[][] }>(['sampler', '--size', String(run.count), '--world', '2', '--seed', '0', '--epoch', '0']);
  for (const rank of [0, 1]) {
    expect(JSON.parse(fs.readFileSync(path.join(dir, `indices-${rank}.json`), 'utf8'))).toEqual(ranks[rank]);
  }
  const ours = await readTensors(modelFile(findCheckpoint(path.join(run.out, 'checkpoints'), 'last')!));
  const initial = await readTensors(path.join(dir, 'initial.safetensors'));
  return { run, ours, initial };
}

/** Weights that training moved by more than 1e-3 relative (so that agreement means something). */
function movedWeights(trained: Tensors, initial: Tensors): number {
  return [...trained].filter(([name, t]) => name.endsWith('weight') && relativeDifference(t, initial.get(name)!) > 1e-3).length;
}

describe('2-rank training against PyTorch DistributedDataParallel (Gloo)', () => {
  const cases = [
    { model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, size: 32 },
    { model: 'inception_v3', modelOptions: { numClasses: 10, auxLogits: false, dropout: 0 }, size: 75 },
  ];
  // NCHW on both sides: libtorch runs the same kernels for both engines, so their weights agree to rounding.
  it.each(cases)('$model: the same shards, the same weights after 6 Adam steps, and an evaluation equal to one process\'s', async ({ model, modelOptions, size }) => {
    const { run, ours, initial } = await ours2Ranks({ model, modelOptions, size, channelsLast: false });
    const theirs = await pytorchDdp({ ...run, channelsLast: false });
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    let worst = { name: '', difference: 0 };
    for (const [name, tensor] of theirs) {
      const difference = relativeDifference(ours.get(name)!, tensor);
      if (difference > worst.difference) worst = { name, difference };
    }
    // Training changed the weights (so equality means something), and both engines agree.
    expect(movedWeights(theirs, initial)).toBeGreaterThan(10);
    expect(worst.difference).toBeLessThan(1e-4);

    // Both ranks report the whole validation split, and the same numbers.
    const evals = [0, 1].map((rank) => JSON.parse(fs.readFileSync(path.join(run.dir, `eval-${rank}.json`), 'utf8')) as { loss: number; accuracy: number; images: number; confusion: number[][] });
    expect(evals[0]).toEqual(evals[1]);
    expect(evals[0].images).toBe(run.count);
    expect(evals[0].confusion.flat().reduce((a, b) => a + b, 0)).toBe(run.count);
  });

  // Channels-last (the default): the convolutions' kernels differ from NCHW's, and these 6 steps amplify rounding
  // (Adam's first steps move each weight by about lr times the sign of its gradient, and many BatchNorm biases
  // have gradients that are zero but for rounding), so PyTorch's own channels-last and NCHW runs end 1-3% apart on
  // convolution weights and 30-130% on such biases. Our run must be as close to PyTorch's channels-last run as that
  // noise: a gradient in the wrong layout or unaveraged moves every weight of its tensor off.
  it('xception, channels-last: each tensor as close to PyTorch DDP channels-last as PyTorch\'s own NCHW run is', async () => {
    const c = { model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, size: 32 };
    const { run, ours, initial } = await ours2Ranks({ ...c, channelsLast: true });
    const theirs = await pytorchDdp({ ...run, channelsLast: true });
    const layoutNoise = await pytorchDdp({ ...run, channelsLast: false });
    expect(movedWeights(theirs, initial)).toBeGreaterThan(10);
    const beyondNoise: string[] = [];
    for (const [name, tensor] of theirs) {
      const difference = relativeDifference(ours.get(name)!, tensor);
      const noise = relativeDifference(layoutNoise.get(name)!, tensor);
      if (difference > Math.max(1e-4, 3 * noise)) beyondNoise.push(`${name}: ${difference.toExponential(1)} (noise ${noise.toExponential(1)})`);
    }
    expect(beyondNoise).toEqual([]);
  });
});

describe('loss scaling across ranks', () => {
  const SCALED_WORKER = `
const fs = require('fs');
const path = require('path');
const { Trainer, GradScaler } = require(${JSON.stringify(path.join(ROOT, 'dist', 'lib', 'index.js'))});
(async () => {
  const c = JSON.parse(process.env.XT_CASE);
  const rank = Number(process.env.RANK);
  const trainer = new Trainer({
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic',
    synthetic: { trainSize: 32, valSize: 8, testSize: 8 }, epochs: 1, batchSize: 8, device: 'cpu', threads: 1, outDir: c.out,
    preprocessing: { crop: 32, resize: 36 }, gradScaler: new GradScaler({ initScale: 1024, growthInterval: 1000 }), distributed: 'env',
  });
  const history = await trainer.fit();
  const model = await trainer.getModel();
  await model.saveSafetensors(path.join(c.dir, 'final-' + rank + '.safetensors'));
  fs.writeFileSync(path.join(c.dir, 'history-' + rank + '.json'), JSON.stringify(history.epochs));
  trainer.dispose();
})().catch((e) => { console.error(e); process.exit(1); });
`;

  it('an overflow on one rank only: every rank skips that step and backs off alike, and the weights stay equal', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'overflow-'));
    const port = await freePort('127.0.0.1');
    const exits = await Promise.all([0, 1].map((rank) => run(process.execPath, ['-e', SCALED_WORKER], {
      XT_CASE: JSON.stringify({ dir, out: path.join(dir, 'run') }), RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port), XCEPTION_TORCH_TEST_INF_GRADIENT: '1:2',  // rank 1's gradients are infinite in step 2
    })));
    for (const e of exits) expect({ code: e.code, stderr: e.stderr }).toEqual({ code: 0, stderr: '' });
    const histories = [0, 1].map((rank) => JSON.parse(fs.readFileSync(path.join(dir, `history-${rank}.json`), 'utf8')) as Array<{ skippedSteps: number; lossScale: number }>);
    for (const h of histories) expect(h[0]).toMatchObject({ skippedSteps: 1, lossScale: 512 });
    const a = await readTensors(path.join(dir, 'final-0.safetensors'));
    const b = await readTensors(path.join(dir, 'final-1.safetensors'));
    // Parameters only: each rank's BatchNorm statistics are its own after its last forward (as in DDP).
    for (const [name, tensor] of a) {
      if (/running_|num_batches_tracked/.test(name)) continue;
      expect({ name, difference: relativeDifference(tensor, b.get(name)!) }).toEqual({ name, difference: 0 });
    }
  });
});

describe('launch forms', () => {
  const args = ['train', '--quick', '--epochs', '1', '--train-limit', '64', '--eval-limit', '16', '--batch-size', '8'];

  it('--nproc-per-node 2 and PyTorch\'s launcher train the same run; rank 0 alone writes and prints', async () => {
    const ours = path.join(tmp, 'launch-ours');
    const r = await run(process.execPath, [CLI, ...args, '--nproc-per-node', '2', '--out', ours]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toContain('data-parallel over 2 processes');
    expect(r.stdout.match(/^test accuracy/gm)).toHaveLength(1);
    const metrics = JSON.parse(fs.readFileSync(path.join(ours, 'metrics.json'), 'utf8')) as { runtime: { worldSize: number; backend: string } };
    expect(metrics.runtime).toMatchObject({ worldSize: 2, backend: 'gloo' });

    const torchrun = path.join(tmp, 'launch-torchrun');
    const port = await freePort('127.0.0.1');
    // --redirects 1 --tee 1: Debian's PyTorch 1.13 launcher under Python 3.11 fails on its default
    // "0" (its Std.from_str finds no member for 0); this sends stdout through it and leaves stderr.
    const t = await run(PYTHON, ['-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', String(port),
      '--redirects', '1', '--tee', '1', '--no_python',
      process.execPath, CLI, ...args, '--threads', '1', '--out', torchrun]);
    expect({ code: t.code, stderr: t.stderr.split('\n').slice(-5).join('\n') }).toMatchObject({ code: 0 });
    expect(t.stdout).toContain('[default0]:test accuracy');
    const a = await readTensors(modelFile(findCheckpoint(path.join(ours, 'checkpoints'), 'last')!));
    const b = await readTensors(modelFile(findCheckpoint(path.join(torchrun, 'checkpoints'), 'last')!));
    for (const [name, tensor] of a) expect({ name, difference: relativeDifference(tensor, b.get(name)!) }).toEqual({ name, difference: 0 });
  });
});

describe('compare --nproc-per-node', () => {
  it('trains both models data-parallel in one process group; rank 0 alone writes compare.json and prints the table', async () => {
    const out = path.join(tmp, 'compare');
    const r = await run(process.execPath, [CLI, 'compare', '--quick', '--epochs', '1', '--train-limit', '32', '--eval-limit', '8', '-b', '8',
      '--nproc-per-node', '2', '--out', out]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout.match(/^wrote compare\.json/gm)).toHaveLength(1);
    const c = JSON.parse(fs.readFileSync(path.join(out, 'compare.json'), 'utf8')) as { complete: boolean; rows: Array<{ testAccuracy: number }> };
    expect(c.complete).toBe(true);
    expect(c.rows).toHaveLength(2);
    for (const row of c.rows) expect(row.testAccuracy).toBeGreaterThanOrEqual(0);
  });
});

describe('faults and resuming with another world size', () => {
  const quick = ['train', '--quick', '--train-limit', '32', '--eval-limit', '8', '--batch-size', '8'];

  function waitFor(check: () => boolean, what: string, seconds = 300): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    return new Promise((resolve, reject) => {
      const poll = () => {
        if (check()) return resolve();
        if (Date.now() > deadline) return reject(new Error(`gave up waiting for ${what}`));
        setTimeout(poll, 200);
      };
      poll();
    });
  }

  /** The launcher's worker processes (its children), by rank. */
  function workers(launcher: number): Map<number, number> {
    const children = fs.readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    const byRank = new Map<number, number>();
    for (const pid of children) {
      const env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const rank = env.find((e) => e.startsWith('RANK='));
      if (rank) byRank.set(Number(rank.slice(5)), pid);
    }
    return byRank;
  }

  /** Starts `train` under our launcher. */
  const startLauncher = (args: string[]) => start(process.execPath, [CLI, ...args]);

  it('kill -9 of one worker stops the run with an error naming it; --resume continues it on 1 process', async () => {
    const out = path.join(tmp, 'killed');
    const { child, output, exited } = startLauncher([...quick, '--epochs', '3', '--nproc-per-node', '2', '--dist-timeout', '60', '--out', out]);
    // Once the first epoch's checkpoint is written, in the second epoch.
    await waitFor(() => findCheckpoint(path.join(out, 'checkpoints'), 'last') !== undefined, 'the first checkpoint');
    const victim = workers(child.pid!).get(1)!;
    process.kill(victim, 'SIGKILL');
    expect((await exited).code).not.toBe(0);
    expect(output.stderr).toContain(`worker rank 1 (pid ${victim}) was killed by SIGKILL`);

    const resumed = await run(process.execPath, [CLI, 'train', '--resume', '--out', out, '--epochs', '3']);
    // Rank 0 may still have been killed (after the launcher's grace period) holding the folder's lock: taken over.
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toMatch(/^(xception-torch: warning: took over \S+\.lock, left by process \d+ .*which no longer runs\n)?$/);
    expect(resumed.stdout).toMatch(/resuming at epoch 2\/3/);
    const history = JSON.parse(fs.readFileSync(path.join(out, 'history.json'), 'utf8')) as { epochs: unknown[] };
    expect(history.epochs).toHaveLength(3);
  });

  it('Ctrl-C on the launcher: every rank stops after the same batch, rank 0 writes one checkpoint, exit 130, --resume on 2 finishes', async () => {
    const out = path.join(tmp, 'interrupted');
    const { child, output, exited } = startLauncher([...quick, '--epochs', '1', '--nproc-per-node', '2', '--out', out]);
    await waitFor(() => /batch 1\/4/.test(output.stdout), 'the first batch');
    child.kill('SIGINT');
    expect((await exited).code).toBe(130);
    const last = findCheckpoint(path.join(out, 'checkpoints'), 'last')!;
    const state = await readCheckpointState(last);
    expect(state.train.position.epoch).toBe(0);
    expect(state.train.position.nextBatch).toBeGreaterThan(0);
    expect(output.stdout).toContain(`interrupted: checkpoint in ${last}`);
    const resumed = await run(process.execPath, [CLI, 'train', '--resume', '--out', out, '--nproc-per-node', '2']);
    expect({ code: resumed.code, stderr: resumed.stderr }).toEqual({ code: 0, stderr: '' });
    expect(resumed.stdout).toMatch(/^test accuracy/m);
  });

  it('a run of 1 process resumes on 2, and its metrics say so', async () => {
    const out = path.join(tmp, 'grown');
    const first = await run(process.execPath, [CLI, ...quick, '--epochs', '1', '--out', out]);
    expect(first.code).toBe(0);
    const resumed = await run(process.execPath, [CLI, 'train', '--resume', '--out', out, '--epochs', '2', '--nproc-per-node', '2']);
    expect({ code: resumed.code, stderr: resumed.stderr }).toEqual({ code: 0, stderr: '' });
    expect(resumed.stdout).toContain('data-parallel over 2 processes');
    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')) as { epochs: number; runtime: { worldSize: number } };
    expect(metrics).toMatchObject({ epochs: 2, runtime: { worldSize: 2 } });
  });

  it('a worker that stops answering makes the other fail within --dist-timeout, naming the collective and its rank', async () => {
    const out = path.join(tmp, 'hung');
    const { child, output, exited } = startLauncher([...quick, '--epochs', '2', '--nproc-per-node', '2', '--dist-timeout', '15', '--out', out]);
    await waitFor(() => findCheckpoint(path.join(out, 'checkpoints'), 'last') !== undefined, 'the first checkpoint');
    const stopped = workers(child.pid!).get(1)!;
    process.kill(stopped, 'SIGSTOP');
    try {
      expect((await exited).code).not.toBe(0);
    } finally {
      try {
        process.kill(stopped, 'SIGKILL');
      } catch {
        // gone already: the launcher stopped it
      }
    }
    expect(output.stderr).toMatch(/distributed [a-z-]+ failed on rank 0 of 2 \(gloo\)/);
    expect(output.stderr).toMatch(/worker rank 0 \(pid \d+\) exited with code 1/);
  });
});
