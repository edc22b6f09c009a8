// The optimizer tests' inputs and their Python side (test/oracle/optim.py: torch.optim and
// PyTorch's GradScaler), shared by the CPU tests and the GPU tests.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { native } from '../../lib/native';
import type { FloatTensor } from '../../lib/native-test-hooks';
import { float32Values, readSafetensors, writeSafetensors } from '../../lib/safetensors';
import type { SafetensorsTensor } from '../../lib/safetensors';
import { PYTHON, requirePythonTorch } from './python';

/** Deterministic values in [-scale, scale) from a linear congruential generator. */
export function randomTensor(shape: number[], seed: number, scale = 1): FloatTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return { shape, data };
}

export const zerosTensor = (shape: number[]): FloatTensor => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });

export const asSafetensor = (t: FloatTensor): SafetensorsTensor =>
  ({ dtype: 'F32', shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) });

/** Runs `optim.py <command>` on the tensors (written to `dir`); returns its output tensors and stdout. */
export async function optimOracle(dir: string, command: 'adam' | 'scaler', tensors: Array<[string, SafetensorsTensor]>, options: object) {
  requirePythonTorch();
  const input = path.join(dir, `${command}-${Math.random()}.safetensors`);
  const out = path.join(dir, `${command}-out-${Math.random()}.safetensors`);
  await writeSafetensors(input, tensors);
  const r = spawnSync(PYTHON, [path.join(__dirname, '..', 'oracle', 'optim.py'), command, '--input', input, '--out', out, '--options', JSON.stringify(options)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return { tensors: (await readSafetensors(out)).tensors, stdout: r.stdout };
}

export interface AdamCase {
  device: 'cpu' | 'cuda';
  adamw: boolean;
  weightDecay: number;
  /** The state's step count before this step (0: fresh state). */
  steps: number;
  shapes: number[][];
}

/** One step of our Adam/AdamW and of torch.optim's on the same weights, gradients and state. */
export async function adamStepBothWays(dir: string, c: AdamCase) {
  const params = c.shapes.map((s, i) => randomTensor(s, 10 + i));
  const grads = c.shapes.map((s, i) => randomTensor(s, 20 + i, 0.1));
  const expAvg = c.shapes.map((s, i) => (c.steps ? randomTensor(s, 30 + i, 0.01) : zerosTensor(s)));
  const expAvgSq = c.shapes.map((s, i) => {
    const t = c.steps ? randomTensor(s, 40 + i, 0.01) : zerosTensor(s);
    return { shape: t.shape, data: t.data.map((v) => v * v) };
  });
  const options = { lr: 3e-3, beta1: 0.85, beta2: 0.995, eps: 1e-7, weightDecay: c.weightDecay };
  const ours = native().adamStep({ params, grads, expAvg, expAvgSq, steps: c.steps, ...options, decoupled: c.adamw, device: c.device });
  const named = (key: string, list: FloatTensor[]) => list.map((t, i): [string, SafetensorsTensor] => [`${key}${i}`, asSafetensor(t)]);
  const reference = await optimOracle(dir, 'adam', [...named('p', params), ...named('g', grads), ...named('m', expAvg), ...named('v', expAvgSq)], {
    lr: options.lr, betas: [options.beta1, options.beta2], eps: options.eps, weight_decay: c.weightDecay, adamw: c.adamw, steps: c.steps, device: c.device,
  });
  return { before: params, ours, reference: reference.tensors };
}

export interface ScalerStepRecord {
  scale: number;
  growth_tracker: number;
  stepped: boolean;
}

/**
 * Ten steps of loss scaling with inf/NaN/-inf injected at steps 2, 3 and 7: our GradScaler + Adam
 * against PyTorch's GradScaler + torch.optim on the same scaled gradients, on `device`.
 */
export async function scalerSequenceBothWays(dir: string, device: 'cpu' | 'cuda', shapes: number[][]) {
  const settings = { initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 3 };
  const steps = 10;
  const poisoned: Record<number, number> = { 2: Infinity, 3: NaN, 7: -Infinity };  // step -> injected value
  let params: FloatTensor[] = shapes.map((s, i) => randomTensor(s, 50 + i));
  const initial = params;
  let expAvg: FloatTensor[] = shapes.map(zerosTensor);
  let expAvgSq: FloatTensor[] = shapes.map(zerosTensor);
  let adamSteps = 0;
  let state = { scale: settings.initScale, growthTracker: 0, skippedSteps: 0 };
  const allGrads: FloatTensor[][] = [];
  const ours: ScalerStepRecord[] = [];
  for (let s = 0; s < steps; s++) {
    // Gradients as a scaled backward pass leaves them: true gradient x current scale.
    const grads = shapes.map((shape, i) => ({ shape, data: randomTensor(shape, 100 * s + i, 0.01).data.map((v) => v * state.scale) }));
    if (s in poisoned) grads[s % shapes.length].data[1] = poisoned[s];
    allGrads.push(grads.map((g) => ({ shape: g.shape, data: g.data.slice() })));
    const r = native().gradScalerStep({ grads, ...state, ...settings, device });
    if (!r.foundInf) {
      const a = native().adamStep({ params, grads: r.grads, expAvg, expAvgSq, steps: adamSteps, lr: 1e-2, device });
      ({ params, expAvg, expAvgSq } = a);
      adamSteps = a.steps;
    }
    state = { scale: r.scale, growthTracker: r.growthTracker, skippedSteps: r.skippedSteps };
    ours.push({ scale: r.scale, growth_tracker: r.growthTracker, stepped: !r.foundInf });
  }
  const tensors: Array<[string, SafetensorsTensor]> = initial.map((t, i) => [`p${i}`, asSafetensor(t)]);
  allGrads.forEach((grads, s) => grads.forEach((g, i) => tensors.push([`g${s}_${i}`, asSafetensor(g)])));
  const ref = await optimOracle(dir, 'scaler', tensors, {
    steps, lr: 1e-2, init_scale: settings.initScale, growth_factor: settings.growthFactor,
    backoff_factor: settings.backoffFactor, growth_interval: settings.growthInterval, device,
  });
  return {
    ours, reference: JSON.parse(ref.stdout) as ScalerStepRecord[], skippedSteps: state.skippedSteps,
    params, referenceParams: shapes.map((_, i) => float32Values(ref.tensors.get(`p${i}`)!)),
  };
}
