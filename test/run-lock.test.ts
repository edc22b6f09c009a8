// The run-folder lock (lib/run-lock.ts): one run per folder, a clear error naming the owner, stale
// locks of dead processes taken over, released on success, on errors and on exit; and the same
// guarantees through the CLI (two `train` into one --out) and the Trainer.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { acquireRunLock, LOCK_FILE, LockOwner, RunLockedError, withRunLock } from '../lib/run-lock';
import { Trainer, TrainerOptions } from '../lib/trainer';

const ROOT = path.join(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-lock-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
const freshFolder = () => path.join(tmp, `run-${++counter}`);

/** A pid that is certainly not running: a child that has exited. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

function writeLock(folder: string, owner: Partial<LockOwner>): string {
  fs.mkdirSync(folder, { recursive: true });
  const file = path.join(folder, LOCK_FILE);
  fs.writeFileSync(file, JSON.stringify({ host: os.hostname(), startedAt: '2025-01-01T00:00:00.000Z', token: 'old', ...owner }));
  return file;
}

/** TensorBoard's event files, one per fit(). */
const isEventFile = (name: string) => name.startsWith('events.out.tfevents.');

const readOwner = (folder: string): LockOwner => JSON.parse(fs.readFileSync(path.join(folder, LOCK_FILE), 'utf8')) as LockOwner;

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

/** Runs a snippet in a child process (through ts-node) with the lock module as `lock` and `args`; it gives up after 30 s. */
function child(code: string, args: string[] = []) {
  const script = `const lock = require(${JSON.stringify(path.join(ROOT, 'lib', 'run-lock'))});
    const args = ${JSON.stringify(args)};
    setTimeout(() => process.exit(3), 30000).unref();
    ${code}`;
  return spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: ROOT });
}

function finished(proc: ReturnType<typeof spawn>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe('acquireRunLock', () => {
  it('writes the owner (pid, host, start time, token) to <folder>/.lock and removes it on release', () => {
    const folder = freshFolder();
    const lock = acquireRunLock(folder);
    fs.writeFileSync(path.join(folder, 'history.json'), '{}');
    const owner = readOwner(folder);
    expect(owner).toEqual({ pid: process.pid, host: os.hostname(), startedAt: expect.any(String), thread: 0, token: expect.stringMatching(/^[0-9a-f]{16}$/) });
    expect(Date.now() - Date.parse(owner.startedAt)).toBeLessThan(60_000);
    lock.release();
    expect(fs.readdirSync(folder)).toEqual(['history.json']);
    lock.release(); // twice is harmless
  });

  it('refuses a folder that another run holds, naming its pid and host, and leaves that lock alone', () => {
    const folder = freshFolder();
    const file = writeLock(folder, { pid: process.ppid });
    const error = errorOf(() => acquireRunLock(folder));
    expect(error).toBeInstanceOf(RunLockedError);
    expect(error.message).toBe(
      `${folder} is in use by another run: process ${process.ppid} on ${os.hostname()} since 2025-01-01T00:00:00.000Z holds ${file} ` +
      `(if it is not running, delete ${file})`,
    );
    expect((error as RunLockedError).owner?.pid).toBe(process.ppid);
    expect(readOwner(folder).token).toBe('old');
  });

  it('refuses a lock of another machine (its pid cannot be checked from here)', () => {
    const folder = freshFolder();
    writeLock(folder, { pid: deadPid(), host: 'elsewhere.example' });
    expect(errorOf(() => acquireRunLock(folder)).message).toMatch(/in use by another run: process \d+ on elsewhere\.example .*another machine/);
  });

  it('refuses a second lock of the same folder within this process', () => {
    const folder = freshFolder();
    const lock = acquireRunLock(folder);
    expect(errorOf(() => acquireRunLock(folder)).message).toMatch(/in use by another run: another run of this process holds it/);
    lock.release();
    acquireRunLock(folder).release();
  });

  it('takes over the lock of a dead process, with a warning naming it', () => {
    const folder = freshFolder();
    const dead = deadPid();
    const file = writeLock(folder, { pid: dead });
    const warnings: Array<[LockOwner | undefined, string]> = [];
    const lock = acquireRunLock(folder, { onTakeOver: (owner, f) => warnings.push([owner, f]) });
    expect(warnings).toEqual([[expect.objectContaining({ pid: dead, token: 'old' }), file]]);
    expect(readOwner(folder).pid).toBe(process.pid);
    lock.release();
  });

  it('takes over a lock with our own pid but another token (a previous process with the same pid)', () => {
    const folder = freshFolder();
    writeLock(folder, { pid: process.pid, thread: 0 });
    const taken: unknown[] = [];
    const lock = acquireRunLock(folder, { onTakeOver: (owner) => taken.push(owner) });
    expect(taken).toHaveLength(1);
    lock.release();
  });

  it('takes over an unreadable lock file once it is old, and waits for a fresh one', () => {
    const folder = freshFolder();
    const file = path.join(folder, LOCK_FILE);
    fs.mkdirSync(folder);
    fs.writeFileSync(file, '');
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(file, old, old);
    const taken: unknown[] = [];
    acquireRunLock(folder, { onTakeOver: (owner) => taken.push(owner) }).release();
    expect(taken).toEqual([undefined]);
  });

  it('removes the folders it created when the run leaves nothing in them, also when acquiring fails', () => {
    const parent = freshFolder();
    const folder = path.join(parent, 'a', 'b');
    acquireRunLock(folder).release();
    expect(fs.existsSync(parent)).toBe(false);
    fs.mkdirSync(parent);
    writeLock(path.join(parent, 'held'), { pid: process.ppid });
    expect(() => acquireRunLock(path.join(parent, 'held'))).toThrow(RunLockedError);
    expect(fs.readdirSync(parent)).toEqual(['held']);
  });
});

describe('withRunLock', () => {
  it('shares the lock with nested calls of the same chain, refuses other chains, and releases on errors', async () => {
    const folder = freshFolder();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = withRunLock(folder, async () => {
      await withRunLock(folder, async () => undefined); // nested: the same run
      await gate;
      return 'first';
    });
    await expect(withRunLock(folder, async () => 'second')).rejects.toThrow(/another run of this process holds it/);
    release();
    await expect(first).resolves.toBe('first');
    expect(fs.existsSync(path.join(folder, LOCK_FILE))).toBe(false);
    await expect(withRunLock(folder, async () => {
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(fs.existsSync(path.join(folder, LOCK_FILE))).toBe(false);
  });
});

describe('across processes', () => {
  it('a process that exits (process.exit, as a second Ctrl-C does) releases its lock', async () => {
    const folder = freshFolder();
    fs.mkdirSync(folder);
    const r = await finished(child(`lock.acquireRunLock(args[0]); require('fs').writeFileSync(args[0] + '/x', ''); process.exit(130);`, [folder]));
    expect(r.code).toBe(130);
    expect(fs.readdirSync(folder)).toEqual(['x']);
  });

  it('of many processes started together on a stale lock, exactly one gets it; the others name it', async () => {
    const folder = freshFolder();
    writeLock(folder, { pid: deadPid() });
    const go = path.join(folder, 'go');
    // Each waits for the go file, tries once, and holds a lock it got until the others are done.
    const code = `
      const fs = require('fs');
      const [folder, go, ready] = args;
      fs.writeFileSync(ready, '');
      const start = () => {
        if (!fs.existsSync(go)) return setTimeout(start, 2);
        try {
          const l = lock.acquireRunLock(folder, { onTakeOver: () => console.log('took over') });
          console.log('locked');
          setTimeout(() => l.release(), 4000);
        } catch (e) { console.log(e.name + ': ' + e.message); }
      };
      start();`;
    const ready = (i: number) => path.join(tmp, `ready-${counter}-${i}`);
    const runs = Array.from({ length: 6 }, (_, i) => finished(child(code, [folder, go, ready(i)])));
    while (![0, 1, 2, 3, 4, 5].every((i) => fs.existsSync(ready(i)))) await new Promise((r) => setTimeout(r, 20));
    fs.writeFileSync(go, '');
    const results = await Promise.all(runs);
    const outputs = results.map((r) => r.stdout.trim());
    expect(results.map((r) => [r.code, r.stderr])).toEqual(Array(6).fill([0, '']));
    // One took the stale lock away (not necessarily the one that then got the lock first).
    expect(outputs.join('\n').match(/took over/g)).toHaveLength(1);
    expect(outputs.filter((o) => o.endsWith('locked'))).toHaveLength(1);
    const refused = outputs.filter((o) => o.includes('RunLockedError: '));
    expect(refused).toHaveLength(5);
    for (const o of refused) expect(o).toMatch(/RunLockedError: .* is in use by another run: process \d+ on .* holds .*\.lock/);
    expect(fs.readdirSync(folder).sort()).toEqual(['go']);
  }, 60_000);
});

describe('xception-torch train and compare (dist/lib/cli.js)', () => {
  const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
  const cli = (args: string[], cwd = tmp) => finished(spawn(process.execPath, [CLI, ...args], { cwd }));
  const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;

  it('two train runs started together into one --out: exactly one trains, the other fails naming it, the folder is one run', async () => {
    const out = freshFolder();
    const args = (seed: number) => ['train', '--quick', '--train-limit', '32', '--eval-limit', '16', '--epochs', '2', '--seed', String(seed), '--out', out];
    const results = await Promise.all([cli(args(1)), cli(args(2))]);
    const codes = results.map((r) => r.code).sort();
    expect(codes).toEqual([0, 1]);
    const winner = results.findIndex((r) => r.code === 0) + 1;
    const loser = results.find((r) => r.code === 1)!;
    expect(loser.stderr.trim().split('\n')).toHaveLength(1);
    expect(loser.stderr).toMatch(new RegExp(`^xception-torch: error: ${out} is in use by another run: process \\d+ on .+ since .+ holds ${out}/\\.lock`));
    // Everything in the folder is the winner's.
    expect(readJson<{ argv: string[] }>(path.join(out, 'command.json')).argv).toEqual(args(winner));
    expect(readJson<{ epochs: number; options: { seed: number } }>(path.join(out, 'metrics.json'))).toMatchObject({ epochs: 2, options: { seed: winner } });
    expect(readJson<{ options: { seed: number } }>(path.join(out, 'history.json')).options.seed).toBe(winner);
    expect(fs.readFileSync(path.join(out, 'config.yaml'), 'utf8')).toContain(`\nseed: ${winner}\n`);
    // One run's files, with one TensorBoard event file.
    const files = fs.readdirSync(out);
    expect(files.filter(isEventFile)).toHaveLength(1);
    expect(files.filter((f) => !isEventFile(f)).sort()).toEqual(['checkpoints', 'command.json', 'config.yaml', 'history.csv', 'history.json', 'metrics.json']);
  }, 300_000);

  it("refuses --out '' (exit 2, one line) and writes nothing into the current folder", async () => {
    const cwd = freshFolder();
    fs.mkdirSync(cwd);
    for (const command of [['train', '--quick'], ['compare', '--params-only']]) {
      const r = await cli([...command, '--out', ''], cwd);
      expect({ command, code: r.code }).toEqual({ command, code: 2 });
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/--out.*expected a folder, not an empty string/)]);
    }
    expect(fs.readdirSync(cwd)).toEqual([]);
  });
});

describe('Trainer.fit()', () => {
  // A tiny CPU run: Xception without middle-flow blocks on 16 synthetic 32x32 images.
  const options = (outDir: string): TrainerOptions => ({
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 0 }, dataset: 'synthetic',
    synthetic: { trainSize: 16, valSize: 8, testSize: 8, difficulty: 'easy' }, preprocessing: { crop: 32, resize: 36 },
    batchSize: 8, epochs: 1, device: 'cpu', amp: 'off', outDir,
  });

  it('holds the run folder: a second Trainer on the same folder fails while the first fits; the lock is gone after', async () => {
    const out = freshFolder();
    const [a, b] = [new Trainer(options(out)), new Trainer(options(out))];
    try {
      const results = await Promise.allSettled([a.fit(), b.fit()]);
      expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
      const refused = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!.reason as Error;
      expect(refused).toBeInstanceOf(RunLockedError);
      expect(refused.message).toBe(`${out} is in use by another run: another run of this process holds it`);
      expect(fs.existsSync(path.join(out, LOCK_FILE))).toBe(false);
      expect(fs.existsSync(path.join(out, 'metrics.json'))).toBe(true);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('removes what killed runs left half written (checkpoint folders, temporary files) before it starts', async () => {
    const out = freshFolder();
    const dead = deadPid();
    const leftovers = [path.join(out, 'checkpoints', `.best.tmp-${dead}`), path.join(out, 'checkpoints', `.last.tmp-${dead}-00ff`)];
    for (const folder of leftovers) {
      fs.mkdirSync(folder, { recursive: true });
      fs.writeFileSync(path.join(folder, 'model.safetensors'), 'partial');
    }
    fs.writeFileSync(path.join(out, `metrics.json.tmp-${dead}-abcd`), '{"partial');
    writeLock(out, { pid: dead });
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    let calls: unknown[] = [];
    const trainer = new Trainer(options(out));
    try {
      await trainer.fit();
    } finally {
      trainer.dispose();
      calls = [...warn.mock.calls];
      warn.mockRestore();
    }
    expect(calls).toEqual([[`took over ${path.join(out, LOCK_FILE)}, left by process ${dead} (started 2025-01-01T00:00:00.000Z), which no longer runs`, 'RunLockWarning']]);
    expect(fs.readdirSync(out).filter((f) => !isEventFile(f)).sort()).toEqual(['checkpoints', 'history.csv', 'history.json', 'metrics.json']);
    expect(fs.readdirSync(path.join(out, 'checkpoints')).sort()).toEqual(['best', 'last']);
  });
});
