// onnxruntime side of bench/models.ts, in a process of its own (so its peak RSS is its own): the ONNX
// model bench/onnx_export.py wrote from the PyTorch side's weights, in onnxruntime-node's CPU execution
// provider (graph optimisation 'all', intra-op threads = the bench's threads, one inter-op thread,
// sequential execution).
//
//   onnx-side.ts check <model.onnx> <input.f32> <logits.f32> <size> <batch> <threads>
//       runs the fixed input once and compares the logits with PyTorch's: prints
//       {"maxAbsDiff", "maxRelativeError", "tolerance", "ok"}, relative to the largest |PyTorch logit|
//   onnx-side.ts time <model.onnx> <size> <batch> <warmup> <steps> <threads>
//       times session.run() as bench/model-step.ts times model.forward(): the same fixed random batch
//       (seed 0, uniform in [-1, 1)), `warmup` untimed runs, then `steps` timed ones, the logits copied
//       back to JavaScript each time; prints the same JSON as the other sides
//   onnx-side.ts profile <model.onnx> <size> <batch> <warmup> <steps> <threads>
//       the same passes under onnxruntime's profiler (which slows them a little): prints milliseconds per
//       timed pass by operator type and, for convolutions, by input shape, to hold against our pass
//       layer by layer (ONEDNN_VERBOSE=1 on bench/model-step.ts; docs/benchmarks.md "Where the time goes now")
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { createRng } from '../lib/random';
import { cpuSnapshot, othersShare, ownCpuSeconds } from './interference';

/** Largest |onnxruntime - PyTorch| over the largest |PyTorch logit| that counts as the same model. */
export const ONNX_TOLERANCE = 1e-3;

export interface OnnxCheck {
  maxAbsDiff: number;
  maxRelativeError: number;
  tolerance: number;
  ok: boolean;
}

async function open(file: string, threads: number, profilePrefix?: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    ...(profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}),
  });
}

function readFloats(file: string): Float32Array {
  const bytes = fs.readFileSync(file);
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

async function run(session: ort.InferenceSession, input: ort.Tensor): Promise<Float32Array> {
  const out = await session.run({ [session.inputNames[0]]: input });
  return out[session.outputNames[0]].data as Float32Array;
}

async function check(file: string, inputFile: string, logitsFile: string, size: number, batch: number, threads: number): Promise<OnnxCheck> {
  const session = await open(file, threads);
  const logits = await run(session, new ort.Tensor('float32', readFloats(inputFile), [batch, 3, size, size]));
  const expected = readFloats(logitsFile);
  if (logits.length !== expected.length) throw new Error(`onnxruntime gave ${logits.length} logits, PyTorch ${expected.length}`);
  let maxAbsDiff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs(logits[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  const maxRelativeError = maxAbsDiff / (scale || 1);
  await session.release();
  // NaN fails the check too.
  return { maxAbsDiff, maxRelativeError, tolerance: ONNX_TOLERANCE, ok: maxRelativeError <= ONNX_TOLERANCE };
}

/** The fixed batch both `time` and `profile` run: seed 0, uniform in [-1, 1), as bench/model-step.ts feeds ours. */
function timedInput(size: number, batch: number): ort.Tensor {
  const random = createRng(0);
  return new ort.Tensor('float32', Float32Array.from({ length: batch * 3 * size * size }, () => random() * 2 - 1), [batch, 3, size, size]);
}

async function time(file: string, size: number, batch: number, warmup: number, steps: number, threads: number) {
  const session = await open(file, threads);
  const x = timedInput(size, batch);
  const before = cpuSnapshot();
  const cpuBefore = ownCpuSeconds();
  for (let i = 0; i < warmup; i++) await run(session, x);
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await run(session, x);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const after = cpuSnapshot();
  const others = before && after ? othersShare(before, after, ownCpuSeconds() - cpuBefore) : null;
  const images = batch * steps;
  await session.release();
  return { imagesPerSecond: images / seconds, seconds, images, peakRssMb: process.resourceUsage().maxRSS / 1024, othersShare: others };
}

interface ProfileEvent { cat?: string; name: string; ts: number; dur: number; args?: { op_name?: string; input_type_shape?: unknown } }

async function profile(file: string, size: number, batch: number, warmup: number, steps: number, threads: number) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-ort-profile-'));
  try {
    const session = await open(file, threads, path.join(dir, 'profile'));
    const x = timedInput(size, batch);
    for (let i = 0; i < warmup + steps; i++) await run(session, x);
    session.endProfiling();
    await session.release();
    const events = JSON.parse(fs.readFileSync(path.join(dir, fs.readdirSync(dir)[0]), 'utf8')) as ProfileEvent[];
    // Kernel events in run order: keep those of the last `steps` runs.
    const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
    const perPass = (us: number) => Number((us / steps / 1000).toFixed(3));
    const byOp = new Map<string, number>();
    const byConv = new Map<string, number>();
    const firstTimed = runs.length > steps ? runs[runs.length - steps].ts : 0;
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < firstTimed) continue;
      const op = e.args?.op_name ?? '?';
      byOp.set(op, (byOp.get(op) ?? 0) + e.dur);
      if (op.endsWith('Conv')) {
        const shape = JSON.stringify(e.args?.input_type_shape);
        byConv.set(shape, (byConv.get(shape) ?? 0) + e.dur);
      }
    }
    const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, perPass(v)]);
    const timed = runs.slice(-steps);
    return {
      msPerPass: perPass(timed.reduce((sum, e) => sum + e.dur, 0)),
      byOperator: Object.fromEntries(sorted(byOp)),
      convolutionsByInputShape: Object.fromEntries(sorted(byConv)),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const [command, file, ...rest] = process.argv.slice(2);
  if (command === 'check' && rest.length === 5) {
    const [input, logits, size, batch, threads] = rest;
    console.log(JSON.stringify(await check(file, input, logits, Number(size), Number(batch), Number(threads))));
  } else if (command === 'time' && rest.length === 5) {
    const [size, batch, warmup, steps, threads] = rest.map(Number);
    console.log(JSON.stringify(await time(file, size, batch, warmup, steps, threads)));
  } else if (command === 'profile' && rest.length === 5) {
    const [size, batch, warmup, steps, threads] = rest.map(Number);
    console.log(JSON.stringify(await profile(file, size, batch, warmup, steps, threads), null, 1));
  } else {
    throw new Error('usage: onnx-side.ts check <model.onnx> <input.f32> <logits.f32> <size> <batch> <threads>\n' +
      '       onnx-side.ts time <model.onnx> <size> <batch> <warmup> <steps> <threads>\n' +
      '       onnx-side.ts profile <model.onnx> <size> <batch> <warmup> <steps> <threads>');
  }
}

if (require.main === module) {
  main().catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
