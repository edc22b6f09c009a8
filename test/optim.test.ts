// Adam, AdamW and GradScaler of the training loop against torch.optim and PyTorch's GradScaler:
// the same weights, gradients and state give the same results.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { GradScaler } from '../lib/grad-scaler';
import { float32Values } from '../lib/safetensors';
import { adamStepBothWays, scalerSequenceBothWays } from './helpers/optim-oracle';
import { relativeError } from './helpers/tensors';

// [40, 1001]: more than one task of the CPU's one-pass update (16K elements each) and a vector loop
// with a remainder. The hook runs on the JS thread, which keeps one intra-op thread; training runs
// the update on the compute thread's threads, and being elementwise, the split cannot change a value.
const SHAPES = [[4, 3, 3, 3], [17], [5, 8], [40, 1001]];

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-optim-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.each([
  { label: 'Adam, first step', adamw: false, weightDecay: 0, steps: 0 },
  { label: 'Adam with L2 weight decay, from existing state', adamw: false, weightDecay: 1e-2, steps: 7 },
  { label: 'AdamW (decoupled weight decay), from existing state', adamw: true, weightDecay: 5e-2, steps: 3 },
])('$label', ({ adamw, weightDecay, steps }) => {
  it('matches torch.optim within 1e-6 relative', async () => {
    const { before, ours, reference } = await adamStepBothWays(dir, { device: 'cpu', adamw, weightDecay, steps, shapes: SHAPES });
    expect(ours.steps).toBe(steps + 1);
    for (let i = 0; i < SHAPES.length; i++) {
      for (const [ours_, key] of [[ours.params[i], 'p'], [ours.expAvg[i], 'm'], [ours.expAvgSq[i], 'v']] as const) {
        const expected = float32Values(reference.get(`${key}${i}`)!);
        expect({ key: `${key}${i}`, ok: relativeError(ours_.data, expected) <= 1e-6 }).toEqual({ key: `${key}${i}`, ok: true });
      }
      // The step really moved the weights.
      expect(relativeError(ours.params[i].data, before[i].data)).toBeGreaterThan(1e-4);
    }
  });
});

describe('GradScaler', () => {
  it('a scripted sequence with inf/NaN gradients gives PyTorch\'s scales, trackers, skips and weights', async () => {
    const r = await scalerSequenceBothWays(dir, 'cpu', SHAPES);
    expect(r.ours).toEqual(r.reference);
    // The sequence exercises growth and back-off and skips exactly the poisoned steps.
    expect(r.ours.filter((o) => !o.stepped)).toHaveLength(3);
    expect(new Set(r.ours.map((o) => o.scale)).size).toBeGreaterThan(2);
    expect(r.skippedSteps).toBe(3);
    for (let i = 0; i < SHAPES.length; i++) expect(relativeError(r.params[i].data, r.referenceParams[i])).toBeLessThanOrEqual(1e-6);
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
