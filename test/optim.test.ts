// Adam, AdamW and GradScaler of the training loop against torch.optim and PyTorch's GradScaler:
// the same weights, gradients and state give the same results.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native, FloatTensor } from '../lib/native';
import { GradScaler } from '../lib/grad-scaler';
import { writeSafetensors, readSafetensors, float32Values } from '../lib/safetensors';
import type { SafetensorsTensor } from '../lib/safetensors';
import { PYTHON, requirePythonTorch } from './helpers/python';
import { relativeError } from './helpers/tensors';

const SHAPES = [[4, 3, 3, 3], [17], [5, 8]];

function randomTensor(shape: number[], seed: number, scale = 1): FloatTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return { shape, data };
}

const st = (t: FloatTensor): SafetensorsTensor => ({ dtype: 'F32', shape: t.shape, data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) });

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-optim-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function oracle(command: string, tensors: Array<[string, SafetensorsTensor]>, options: object) {
  requirePythonTorch();
  const input = path.join(dir, `${command}-${Math.random()}.safetensors`);
  const out = path.join(dir, `${command}-out-${Math.random()}.safetensors`);
  await writeSafetensors(input, tensors);
  const r = spawnSync(PYTHON, [path.join(__dirname, 'oracle', 'optim.py'), command, '--input', input, '--out', out, '--options', JSON.stringify(options)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return { tensors: (await readSafetensors(out)).tensors, stdout: r.stdout };
}

describe.each([
  { label: 'Adam, first step', adamw: false, weightDecay: 0, steps: 0 },
  { label: 'Adam with L2 weight decay, from existing state', adamw: false, weightDecay: 1e-2, steps: 7 },
  { label: 'AdamW (decoupled weight decay), from existing state', adamw: true, weightDecay: 5e-2, steps: 3 },
])('$label', ({ adamw, weightDecay, steps }) => {
  it('matches torch.optim within 1e-6 relative', async () => {
    const params = SHAPES.map((s, i) => randomTensor(s, 10 + i));
    const grads = SHAPES.map((s, i) => randomTensor(s, 20 + i, 0.1));
    const expAvg = SHAPES.map((s, i) => (steps ? randomTensor(s, 30 + i, 0.01) : { shape: s, data: new Float32Array(s.reduce((a, b) => a * b, 1)) }));
    const expAvgSq = SHAPES.map((s, i) => {
      const t = steps ? randomTensor(s, 40 + i, 0.01) : { shape: s, data: new Float32Array(s.reduce((a, b) => a * b, 1)) };
      return { shape: t.shape, data: t.data.map((v) => v * v) };
    });
    const options = { lr: 3e-3, beta1: 0.85, beta2: 0.995, eps: 1e-7, weightDecay };
    const ours = native().adamStep({ params, grads, expAvg, expAvgSq, steps, ...options, decoupled: adamw });
    expect(ours.steps).toBe(steps + 1);
    const ref = await oracle('adam', [
      ...params.map((t, i): [string, SafetensorsTensor] => [`p${i}`, st(t)]),
      ...grads.map((t, i): [string, SafetensorsTensor] => [`g${i}`, st(t)]),
      ...expAvg.map((t, i): [string, SafetensorsTensor] => [`m${i}`, st(t)]),
      ...expAvgSq.map((t, i): [string, SafetensorsTensor] => [`v${i}`, st(t)]),
    ], { lr: options.lr, betas: [options.beta1, options.beta2], eps: options.eps, weight_decay: weightDecay, adamw, steps });
    for (let i = 0; i < SHAPES.length; i++) {
      for (const [ours_, key] of [[ours.params[i], 'p'], [ours.expAvg[i], 'm'], [ours.expAvgSq[i], 'v']] as const) {
        const reference = float32Values(ref.tensors.get(`${key}${i}`)!);
        expect({ key: `${key}${i}`, ok: relativeError(ours_.data, reference) <= 1e-6 }).toEqual({ key: `${key}${i}`, ok: true });
      }
      // The step really moved the weights.
      expect(relativeError(ours.params[i].data, params[i].data)).toBeGreaterThan(1e-4);
    }
  });
});

describe('GradScaler', () => {
  it('a scripted sequence with inf/NaN gradients gives PyTorch\'s scales, trackers, skips and weights', async () => {
    const settings = { initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 3 };
    const steps = 10;
    const poisoned: Record<number, number> = { 2: Infinity, 3: NaN, 7: -Infinity };  // step -> injected value
    let params: FloatTensor[] = SHAPES.map((s, i) => randomTensor(s, 50 + i));
    const initial = params;
    let expAvg: FloatTensor[] = SHAPES.map((s) => ({ shape: s, data: new Float32Array(s.reduce((a, b) => a * b, 1)) }));
    let expAvgSq: FloatTensor[] = expAvg.map((t) => ({ shape: t.shape, data: new Float32Array(t.data.length) }));
    let adamSteps = 0;
    let state = { scale: settings.initScale, growthTracker: 0, skippedSteps: 0 };
    const allGrads: FloatTensor[][] = [];
    const ours: Array<{ scale: number; growth_tracker: number; stepped: boolean }> = [];
    for (let s = 0; s < steps; s++) {
      // Gradients as a scaled backward pass leaves them: true gradient x current scale.
      const grads = SHAPES.map((shape, i) => {
        const g = randomTensor(shape, 100 * s + i, 0.01);
        return { shape, data: g.data.map((v) => v * state.scale) };
      });
      if (s in poisoned) grads[s % SHAPES.length].data[1] = poisoned[s];
      allGrads.push(grads.map((g) => ({ shape: g.shape, data: g.data.slice() })));
      const r = native().gradScalerStep({ grads, ...state, ...settings });
      if (!r.foundInf) {
        const a = native().adamStep({ params, grads: r.grads, expAvg, expAvgSq, steps: adamSteps, lr: 1e-2 });
        params = a.params;
        expAvg = a.expAvg;
        expAvgSq = a.expAvgSq;
        adamSteps = a.steps;
      }
      state = { scale: r.scale, growthTracker: r.growthTracker, skippedSteps: r.skippedSteps };
      ours.push({ scale: r.scale, growth_tracker: r.growthTracker, stepped: !r.foundInf });
    }
    const tensors: Array<[string, SafetensorsTensor]> = initial.map((t, i) => [`p${i}`, st(t)]);
    allGrads.forEach((grads, s) => grads.forEach((g, i) => tensors.push([`g${s}_${i}`, st(g)])));
    const ref = await oracle('scaler', tensors, {
      steps, lr: 1e-2, init_scale: settings.initScale, growth_factor: settings.growthFactor,
      backoff_factor: settings.backoffFactor, growth_interval: settings.growthInterval,
    });
    const trajectory = JSON.parse(ref.stdout) as typeof ours;
    expect(ours).toEqual(trajectory);
    // The sequence exercises growth and back-off and skips exactly the poisoned steps.
    expect(ours.filter((o) => !o.stepped)).toHaveLength(3);
    expect(new Set(ours.map((o) => o.scale)).size).toBeGreaterThan(2);
    expect(state.skippedSteps).toBe(3);
    for (let i = 0; i < SHAPES.length; i++) {
      expect(relativeError(params[i].data, float32Values(ref.tensors.get(`p${i}`)!))).toBeLessThanOrEqual(1e-6);
    }
  });

  it('has torch.amp defaults, validates its options and round-trips its state', () => {
    const scaler = new GradScaler();
    expect(scaler.stateDict()).toEqual({
      scale: 65536, growth_factor: 2, backoff_factor: 0.5, growth_interval: 2000, _growth_tracker: 0, skipped_steps: 0,
    });
    scaler.update({ scale: 4096, growthTracker: 17, skippedSteps: 3 });
    const copy = new GradScaler();
    copy.loadStateDict(JSON.parse(JSON.stringify(scaler.stateDict())));
    expect([copy.scale, copy.growthTracker, copy.skippedSteps]).toEqual([4096, 17, 3]);
    expect(new GradScaler({ enabled: false }).scale).toBe(1);
    expect(() => new GradScaler({ backoffFactor: 1.5 })).toThrow(/backoffFactor must be in \(0, 1\)/);
    expect(() => new GradScaler({ growthInterval: 0 })).toThrow(/growthInterval must be a positive integer/);
  });
});
