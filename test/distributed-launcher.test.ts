// --nproc-per-node's launcher with a fake worker (a small Node script, no training): the
// environment each rank gets, the free port, a failing or killed worker stopping the others,
// Ctrl-C relayed to every worker; and the launch checks of `train` that refuse before spawning.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { defaultThreadsPerWorker, exitCodeOf, launchWorkers } from '../lib/distributed/launcher';
import { freePort } from '../lib/distributed/free-port';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-launcher-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// FAKE_PLAN maps a rank to what it does: 'env' (record its environment and arguments, exit 0),
// 'exit:N' or 'sigkill' once every rank is up, 'wait' (until a signal; SIGINT -> exit 130),
// 'stubborn' (as 'wait', but ignores SIGTERM). Each rank writes <dir>/up-<rank> with its pid once ready.
const FAKE_WORKER = `
const fs = require('fs');
const path = require('path');
const dir = process.env.FAKE_DIR;
const rank = process.env.RANK;
const action = JSON.parse(process.env.FAKE_PLAN)[rank];
const allUp = () => fs.readdirSync(dir).filter((f) => f.startsWith('up-')).length === Number(process.env.WORLD_SIZE);
const whenAllUp = (then) => { const t = setInterval(() => { if (allUp()) { clearInterval(t); then(); } }, 20); };
if (action === 'env') {
  const keys = ['RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'TORCHELASTIC_USE_AGENT_STORE', 'KEEP_ME'];
  fs.writeFileSync(path.join(dir, 'env-' + rank + '.json'), JSON.stringify({ env: Object.fromEntries(keys.map((k) => [k, process.env[k]])), argv: process.argv.slice(2) }));
} else if (action.startsWith('exit:')) {
  whenAllUp(() => process.exit(Number(action.slice(5))));
} else if (action === 'sigkill') {
  whenAllUp(() => process.kill(process.pid, 'SIGKILL'));
} else {
  process.on('SIGINT', () => { fs.writeFileSync(path.join(dir, 'interrupted-' + rank), ''); process.exit(130); });
  if (action === 'stubborn') process.on('SIGTERM', () => fs.writeFileSync(path.join(dir, 'ignored-sigterm-' + rank), ''));
  setInterval(() => undefined, 1000);
}
// Last, so that a rank is up only once its signal handlers are in place.
fs.writeFileSync(path.join(dir, 'up-' + rank), String(process.pid));
`;
const WORKER_SCRIPT = path.join(tmp, 'fake-worker.js');
fs.writeFileSync(WORKER_SCRIPT, FAKE_WORKER);

let runs = 0;
/** A fresh folder and environment for one launch with `plan` (rank -> action). */
function fakeRun(plan: Record<number, string>) {
  const dir = path.join(tmp, `run-${++runs}`);
  fs.mkdirSync(dir);
  const env = { ...process.env, FAKE_DIR: dir, FAKE_PLAN: JSON.stringify(plan), KEEP_ME: 'kept' };
  const pidOf = (rank: number) => Number(fs.readFileSync(path.join(dir, `up-${rank}`), 'utf8'));
  return { dir, env, pidOf };
}

/** Whether process `pid` still exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('launchWorkers', () => {
  it("gives each rank torchrun's environment, a free port shared by all, the arguments and --threads", async () => {
    const { dir, env } = fakeRun({ 0: 'env', 1: 'env', 2: 'env' });
    const lines: string[] = [];
    const code = await launchWorkers({
      nprocPerNode: 3, argv: ['train', '--quick'], threadsPerWorker: 2, workerCommand: [process.execPath, WORKER_SCRIPT],
      env: { ...env, TORCHELASTIC_USE_AGENT_STORE: 'True' }, log: (line) => lines.push(line),
    });
    expect(code).toBe(0);
    expect(lines).toEqual([]);
    const seen = [0, 1, 2].map((rank) => JSON.parse(fs.readFileSync(path.join(dir, `env-${rank}.json`), 'utf8')));
    const port = seen[0].env.MASTER_PORT;
    expect(Number(port)).toBeGreaterThan(0);
    seen.forEach((s, rank) => {
      expect(s.env).toEqual({
        RANK: String(rank), LOCAL_RANK: String(rank), WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, KEEP_ME: 'kept',
      });
      expect(s.argv).toEqual(['train', '--quick', '--threads', '2']);
    });
    // The port is free again for rank 0's store.
    await new Promise<void>((resolve, reject) => {
      const server = net.createServer().once('error', reject).listen(Number(port), '127.0.0.1', () => server.close(() => resolve()));
    });
  });

  it('uses the address and port it is given, and adds no --threads unless asked', async () => {
    const { dir, env } = fakeRun({ 0: 'env', 1: 'env' });
    const port = await freePort('127.0.0.1');
    const code = await launchWorkers({
      nprocPerNode: 2, argv: ['compare', '--threads', '5'], masterAddr: 'localhost', masterPort: port, workerCommand: [process.execPath, WORKER_SCRIPT], env,
    });
    expect(code).toBe(0);
    const s = JSON.parse(fs.readFileSync(path.join(dir, 'env-1.json'), 'utf8'));
    expect(s.env).toMatchObject({ MASTER_ADDR: 'localhost', MASTER_PORT: String(port), RANK: '1' });
    expect(s.argv).toEqual(['compare', '--threads', '5']);
  });

  it("stops the others when one worker exits non-zero, naming it, and exits with the worker's code", async () => {
    const { env, pidOf } = fakeRun({ 0: 'wait', 1: 'exit:3', 2: 'wait' });
    const lines: string[] = [];
    const code = await launchWorkers({ nprocPerNode: 3, argv: [], workerCommand: [process.execPath, WORKER_SCRIPT], env, log: (l) => lines.push(l) });
    expect(code).toBe(3);
    expect(lines).toEqual([`xception-torch: worker rank 1 (pid ${pidOf(1)}) exited with code 3; stopping the other 2 workers`]);
    for (const rank of [0, 1, 2]) expect(alive(pidOf(rank))).toBe(false);
  });

  it('kills a worker that ignores SIGTERM after the grace period', async () => {
    const { dir, env, pidOf } = fakeRun({ 0: 'stubborn', 1: 'exit:4' });
    const code = await launchWorkers({ nprocPerNode: 2, argv: [], workerCommand: [process.execPath, WORKER_SCRIPT], env, graceMs: 300, log: () => undefined });
    expect(code).toBe(4);
    // It did get SIGTERM, ignored it, and is gone all the same.
    expect(fs.existsSync(path.join(dir, 'ignored-sigterm-0'))).toBe(true);
    expect(alive(pidOf(0))).toBe(false);
  });

  it('reports a worker killed by a signal with 128 + its number', async () => {
    const { env, pidOf } = fakeRun({ 0: 'wait', 1: 'sigkill' });
    const lines: string[] = [];
    const code = await launchWorkers({ nprocPerNode: 2, argv: [], workerCommand: [process.execPath, WORKER_SCRIPT], env, log: (l) => lines.push(l) });
    expect(code).toBe(137);
    expect(lines).toEqual([`xception-torch: worker rank 1 (pid ${pidOf(1)}) was killed by SIGKILL; stopping the other 1 worker`]);
    expect(alive(pidOf(0))).toBe(false);
  });

  it('reports a worker that cannot start', async () => {
    const lines: string[] = [];
    const code = await launchWorkers({ nprocPerNode: 2, argv: [], workerCommand: [path.join(tmp, 'no-such-program')], log: (l) => lines.push(l) });
    expect(code).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^xception-torch: worker rank [01] \(pid none\) could not start: .*ENOENT/);
  });

  it('relays SIGINT to every worker and exits 130 once they have', async () => {
    // The launcher runs in a process of its own, which the test interrupts as Ctrl-C would.
    const { dir, env, pidOf } = fakeRun({ 0: 'wait', 1: 'wait' });
    const launcher = path.join(__dirname, '..', 'lib', 'distributed', 'launcher.ts');
    const driver = `require(${JSON.stringify(launcher)}).launchWorkers({ nprocPerNode: 2, argv: [], workerCommand: [process.execPath, ${JSON.stringify(WORKER_SCRIPT)}] })` +
      '.then((code) => { process.exitCode = code; });';
    const child = spawn(process.execPath, ['-r', require.resolve('ts-node/register/transpile-only'), '-e', driver], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    // Once both workers are up (no clock in the assertion: this waits as long as jest lets it).
    while (!(fs.existsSync(path.join(dir, 'up-0')) && fs.existsSync(path.join(dir, 'up-1')))) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/SIGINT: asking the 2 workers to write a checkpoint and stop/);
    for (const rank of [0, 1]) {
      expect(fs.existsSync(path.join(dir, `interrupted-${rank}`))).toBe(true);
      expect(alive(pidOf(rank))).toBe(false);
    }
  });
});

describe('launcher helpers', () => {
  it('shares the cores among the workers, at least one thread each', () => {
    expect(defaultThreadsPerWorker(2, 16)).toBe(8);
    expect(defaultThreadsPerWorker(3, 8)).toBe(2);
    expect(defaultThreadsPerWorker(4, 2)).toBe(1);
    expect(defaultThreadsPerWorker(1)).toBe(os.availableParallelism());
  });

  it("gives a signal's exit code as a shell does", () => {
    expect(exitCodeOf(3, null)).toBe(3);
    expect(exitCodeOf(null, 'SIGKILL')).toBe(137);
    expect(exitCodeOf(null, 'SIGTERM')).toBe(143);
  });

  it('finds a port that can be listened on', async () => {
    const port = await freePort('127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      const server = net.createServer().once('error', reject).listen(port, '127.0.0.1', () => server.close(() => resolve()));
    });
  });
});

describe('train --nproc-per-node: refused before any worker starts', () => {
  const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
  const run = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: tmp, env: { ...process.env, WORLD_SIZE: '' } });

  it('a global batch that does not divide across the workers', () => {
    const r = run(['train', '--quick', '--nproc-per-node', '3']);
    expect(r.stderr).toMatch(/^xception-torch: error: --batch-size \(batchSize\) 16 is the global batch and must divide evenly across the 3 processes \(world size 3\)/);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
  });

  it('nccl on the CPU', () => {
    const r = run(['train', '--quick', '--nproc-per-node', '2', '--dist-backend', 'nccl']);
    expect(r.stderr).toMatch(/--dist-backend nccl reduces CUDA tensors only/);
    expect(r.status).toBe(2);
  });

  it('--params-only and --throughput', () => {
    const r = run(['compare', '--params-only', '--nproc-per-node', '2']);
    expect(r.stderr).toMatch(/--nproc-per-node trains in parallel; --params-only and --throughput run in one process/);
    expect(r.status).toBe(2);
    expect(fs.readdirSync(tmp).filter((f) => f === 'runs')).toEqual([]);
  });
});
