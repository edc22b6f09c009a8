// Forward parity with the PyTorch references: the same weights give the same eval-mode logits
// here and in Python (torchvision's Inception V3; the independent Xception in test/oracle/), in
// both directions of the weight transfer.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createModel, ModelName } from '../lib';
import { oracle } from './helpers/python';
import { readTensor, relativeError } from './helpers/tensors';

const TOLERANCE = 1e-4;

interface Case {
  label: string;
  model: ModelName;
  options: Record<string, unknown>;
  size: number;
}

const cases: Case[] = [
  { label: 'Xception, no intermediate activation (paper)', model: 'xception', options: { numClasses: 10 }, size: 96 },
  { label: 'Xception, ReLU between depthwise and pointwise', model: 'xception', options: { numClasses: 10, intermediateActivation: 'relu' }, size: 96 },
  { label: 'Xception, ELU between depthwise and pointwise', model: 'xception', options: { numClasses: 10, intermediateActivation: 'elu' }, size: 96 },
  { label: 'Xception, notebook variant', model: 'xception', options: { numClasses: 10, variant: 'notebook', intermediateActivation: 'relu' }, size: 80 },
  { label: 'Inception V3 with aux logits', model: 'inception_v3', options: { numClasses: 10 }, size: 96 },
  { label: 'Inception V3, transform_input, no aux', model: 'inception_v3', options: { numClasses: 7, auxLogits: false, transformInput: true }, size: 107 },
];

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-parity-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe.each(cases)('$label', ({ model: name, options, size }) => {
  let caseDir: string;
  beforeAll(() => {
    caseDir = fs.mkdtempSync(path.join(dir, 'case-'));
    oracle('make', { model: name, options: JSON.stringify(options), seed: 7, size, batch: 2, dir: caseDir });
  });

  it(`loads PyTorch's weights and matches its logits (relative error <= ${TOLERANCE})`, async () => {
    const model = createModel(name, options as never);
    await model.loadSafetensors(path.join(caseDir, 'weights.safetensors'));
    model.eval();
    const input = await readTensor(path.join(caseDir, 'input.safetensors'), 'x');
    const reference = await readTensor(path.join(caseDir, 'logits.safetensors'), 'logits');
    const ours = await model.forward(input);
    expect(ours.shape).toEqual(reference.shape);
    expect(relativeError(ours.data, reference.data)).toBeLessThanOrEqual(TOLERANCE);
    // The check can fail: the untrained model (other weights) does not match.
    const fresh = createModel(name, options as never).eval();
    expect(relativeError((await fresh.forward(input)).data, reference.data)).toBeGreaterThan(0.01);
    fresh.dispose();
    if (options.intermediateActivation && options.intermediateActivation !== 'none') {
      // ...and neither do the same weights without the activation between depthwise and pointwise.
      const plain = createModel(name, { ...options, intermediateActivation: 'none' } as never).eval();
      await plain.loadSafetensors(path.join(caseDir, 'weights.safetensors'));
      expect(relativeError((await plain.forward(input)).data, reference.data)).toBeGreaterThan(1e-3);
      plain.dispose();
    }
    model.dispose();
  });

  it('saves weights that PyTorch loads strictly, bit for bit, with the same logits', async () => {
    const model = createModel(name, options as never);
    await model.loadSafetensors(path.join(caseDir, 'weights.safetensors'));
    const saved = path.join(caseDir, 'ours.safetensors');
    await model.saveSafetensors(saved);
    const out = path.join(caseDir, 'python-logits.safetensors');
    const result = oracle<{ differing: string[] }>('forward', {
      model: name, options: JSON.stringify(options), weights: saved,
      input: path.join(caseDir, 'input.safetensors'), out, expect: path.join(caseDir, 'weights.safetensors'),
    });
    expect(result.differing).toEqual([]);
    const input = await readTensor(path.join(caseDir, 'input.safetensors'), 'x');
    const ours = await model.eval().forward(input);
    expect(relativeError(ours.data, (await readTensor(out, 'logits')).data)).toBeLessThanOrEqual(TOLERANCE);
    model.dispose();
  });
});

describe('initialisation', () => {
  it('Inception V3 follows torchvision: truncated normal std 0.1 (AuxLogits.fc 0.001), BN 1/0', async () => {
    const model = createModel('inception_v3', { numClasses: 10 });
    const file = path.join(dir, 'init-inception.safetensors');
    await model.saveSafetensors(file);
    const report = oracle<Record<string, { reference?: number; ours?: number; numel?: number; mismatch?: boolean }>>(
      'init', { model: 'inception_v3', options: JSON.stringify({ numClasses: 10 }), weights: file },
    );
    const entries = Object.entries(report);
    expect(entries.length).toBeGreaterThan(90);
    for (const [key, r] of entries) {
      expect({ key, mismatch: r.mismatch ?? false }).toEqual({ key, mismatch: false });
      if ((r.numel ?? 0) >= 5000) {
        expect({ key, ratio: Math.abs((r.ours as number) / (r.reference as number) - 1) < 0.1 }).toEqual({ key, ratio: true });
      }
    }
    expect(report['AuxLogits.fc.weight'].ours).toBeLessThan(0.002);
    model.dispose();
  });
});
