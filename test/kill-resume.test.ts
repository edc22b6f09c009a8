// kill -9 at random points of a small CPU `train` run (dist/lib/cli.js): every time, the run folder
// is left so that `train --resume` continues it (or, killed before its first checkpoint, a new
// `train` into the same folder starts it), and the finished run is exactly the uninterrupted one.
// KILL_TRIALS sets the number of kills (default 20); KILL_SEED the random points.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { findCheckpoint } from '../lib/checkpoint';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const TRIALS = Number(process.env.KILL_TRIALS ?? 20);
const SEED = Number(process.env.KILL_SEED ?? Date.now() % 100_000);
// Two epochs of two batches of 16 synthetic 32x32 images: a few seconds, most of them writing checkpoints.
const ARGS = ['--quick', '--train-limit', '32', '--eval-limit', '16', '--epochs', '2'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-kill-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The times (ms from the start) at which a `train` run printed each line of its output, and ended. */
interface Timeline {
  lines: number[];
  end: number;
}

/**
 * Starts `train` into `out`; once it has printed `afterLines` lines, waits `delay(elapsed)` ms more
 * (elapsed: ms since the start) and kills it with SIGKILL, unless it ended before. Resolves with
 * whether it was killed, its exit code and the timeline of its output.
 */
function trainKilled(out: string, afterLines: number, delay: (elapsed: number) => number): Promise<{ killed: boolean; code: number | null; timeline: Timeline }> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, 'train', ...ARGS, '--out', out], { stdio: ['ignore', 'pipe', 'ignore'] });
  const lines: number[] = [];
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    if (timer === undefined && lines.length >= afterLines) timer = setTimeout(() => child.kill('SIGKILL'), delay(Date.now() - started));
  };
  child.stdout.on('data', (chunk: Buffer) => {
    for (const c of chunk.toString()) if (c === '\n') lines.push(Date.now() - started);
    arm();
  });
  arm();
  return new Promise((resolve) => child.on('exit', (code, signal) => {
    clearTimeout(timer);
    resolve({ killed: signal === 'SIGKILL', code, timeline: { lines, end: Date.now() - started } });
  }));
}

/** mulberry32: the kill points, reproducible from KILL_SEED. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What a killed process may leave and the next run must clear: its lock, temporary files and folders. */
const leftover = (name: string) => name === '.lock' || name.startsWith('.lock.') || /\.tmp-\d+/.test(name);
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
const weights = (out: string) => fs.readFileSync(path.join(out, 'checkpoints', 'last', 'model.safetensors'));

it(`kill -9 at ${TRIALS} random points of a train run: train --resume always continues it to the uninterrupted result (KILL_SEED=${SEED})`, async () => {
  // The uninterrupted run: what every trial must end with, and when it prints what.
  const reference = path.join(tmp, 'reference');
  const { code, timeline } = await trainKilled(reference, Infinity, () => 0);
  expect(code).toBe(0);
  // The segments of the run between lines of output (the first from the start, the last to the end).
  const marks = [0, ...timeline.lines, timeline.end];
  expect(timeline.lines.length).toBeGreaterThanOrEqual(8);
  // The figures that do not depend on timing.
  const outcome = (out: string) => {
    const m = readJson<Record<string, unknown>>(path.join(out, 'metrics.json'));
    return { epochs: m.epochs, testLoss: m.testLoss, testAccuracy: m.testAccuracy, bestEpoch: m.bestEpoch, bestValAccuracy: m.bestValAccuracy };
  };
  expect(fs.existsSync(path.join(reference, 'metrics.json'))).toBe(true);
  const expected = outcome(reference);
  expect(expected.epochs).toBe(2);

  const next = random(SEED);
  const outcomes: string[] = [];
  for (let i = 0; i < TRIALS; i++) {
    const out = path.join(tmp, `trial-${i}`);
    // The kill lands in each segment of the run in turn, at a random point of it: after the run has
    // printed `segment` lines, a random fraction of that segment's length in the reference run,
    // stretched by how much slower this run has been so far (the machine may be busy).
    const segment = i % (marks.length - 1);
    const fraction = next();
    let ms = 0;
    const { killed } = await trainKilled(out, segment, (elapsed) => {
      const slowdown = segment === 0 ? 1 : elapsed / marks[segment];
      ms = Math.round(fraction * (marks[segment + 1] - marks[segment]) * slowdown);
      return ms;
    });
    const trial = `trial ${i} (killed ${ms} ms after line ${segment}${killed ? '' : ', had finished'})`;

    if (!killed || (fs.existsSync(path.join(out, 'metrics.json')) && findCheckpoint(path.join(out, 'checkpoints'), 'last'))) {
      // Finished before the kill landed: nothing to continue.
      const r = run(['train', '--resume', '--out', out]);
      expect({ trial, code: r.code, stderr: r.stderr }).toEqual({ trial, code: 2, stderr: expect.stringMatching(/has trained its 2 epochs/) });
      outcomes.push('finished');
    } else if (findCheckpoint(path.join(out, 'checkpoints'), 'last')) {
      const r = run(['train', '--resume', '--out', out]);
      expect({ trial, code: r.code, stderr: r.stderr.replace(/^xception-torch: warning: took over .*\n/, '') }).toEqual({ trial, code: 0, stderr: '' });
      outcomes.push('resumed');
    } else {
      // Killed before its first checkpoint: nothing to resume, and a new run into the folder starts.
      const resume = run(['train', '--resume', '--out', out]);
      expect({ trial, code: resume.code, stderr: resume.stderr }).toEqual({ trial, code: 1, stderr: expect.stringMatching(/nothing to resume: no checkpoint in/) });
      const r = run(['train', ...ARGS, '--out', out]);
      expect({ trial, code: r.code, stderr: r.stderr.replace(/^xception-torch: warning: took over .*\n/, '') }).toEqual({ trial, code: 0, stderr: '' });
      outcomes.push('restarted');
    }
    // The finished run: exactly the uninterrupted one, and nothing left of the killed process.
    expect({ trial, metrics: outcome(out) }).toEqual({ trial, metrics: expected });
    expect({ trial, same: weights(out).equals(weights(reference)) }).toEqual({ trial, same: true });
    const files = fs.readdirSync(out);
    expect({ trial, files: ['checkpoints', 'command.json', 'history.csv', 'history.json', 'metrics.json'].filter((f) => !files.includes(f)) }).toEqual({ trial, files: [] });
    expect({ trial, leftovers: files.filter(leftover) }).toEqual({ trial, leftovers: [] });
    expect({ trial, checkpoints: fs.readdirSync(path.join(out, 'checkpoints')).sort() }).toEqual({ trial, checkpoints: ['best', 'last'] });
    fs.rmSync(out, { recursive: true, force: true });
  }
  // The kills landed all along the run: most of them after the first checkpoint.
  expect(outcomes.filter((o) => o === 'resumed').length).toBeGreaterThanOrEqual(TRIALS / 4);
}, 1_200_000);
