// BatchNorm folding in eval passes (native/folded_inference.h): the folded model gives the logits
// of the unfolded one and of PyTorch, and its folded copy of the weights follows every change of
// the weights (a training step, BatchNorm statistics, loaded weights).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createModel, Model, ModelName, runtimeInfo, setInferenceConvolutions, setInferencePasses, TensorData } from '../lib';
import { native } from '../lib/native';
import { Trainer } from '../lib/trainer';
import { oracle } from './helpers/python';
import { readTensor, relativeError } from './helpers/tensors';

jest.setTimeout(600_000);

const TOLERANCE = 1e-4;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-folding-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function unfolded(model: Model, x: TensorData): Promise<TensorData> {
  model.setBatchNormFolding(false);
  try {
    return await model.forward(x);
  } finally {
    model.setBatchNormFolding(true);
  }
}

interface Case {
  label: string;
  model: ModelName;
  options: Record<string, unknown>;
  pairs: number;  // conv -> BatchNorm pairs the model folds
}

const cases: Case[] = [
  // 2 stem convs, 4 skip convs, 32 separable convs in the blocks, 2 in the exit flow.
  { label: 'Xception, no intermediate activation', model: 'xception', options: { numClasses: 10 }, pairs: 40 },
  { label: 'Xception, ReLU intermediate activation', model: 'xception', options: { numClasses: 10, intermediateActivation: 'relu' }, pairs: 40 },
  { label: 'Xception, ELU intermediate activation', model: 'xception', options: { numClasses: 10, intermediateActivation: 'elu' }, pairs: 40 },
  // Every BasicConv2d of the trunk (the aux head's 2 run in training only).
  { label: 'Inception V3', model: 'inception_v3', options: { numClasses: 10 }, pairs: 94 },
];

describe.each(cases)('$label', ({ model: name, options, pairs }) => {
  it(`folded eval logits equal the unfolded model's and PyTorch's (relative error <= ${TOLERANCE})`, async () => {
    const caseDir = fs.mkdtempSync(path.join(dir, 'case-'));
    // Weights with realistic BatchNorm statistics (not 0 and 1), so that folding changes them.
    oracle('make', { model: name, options: JSON.stringify(options), seed: 11, size: 96, batch: 2, dir: caseDir });
    const model = createModel(name, options as never);
    await model.loadSafetensors(path.join(caseDir, 'weights.safetensors'));
    model.eval();
    const input = await readTensor(path.join(caseDir, 'input.safetensors'), 'x');
    const reference = await readTensor(path.join(caseDir, 'logits.safetensors'), 'logits');

    expect(model.batchNormFolding()).toEqual({ enabled: true, pairs, refreshes: 0 });
    const folded = await model.forward(input);
    // The pass did fold: the copy was computed once, and a second pass reuses it.
    expect(model.batchNormFolding().refreshes).toBe(1);
    const again = await model.forward(input);
    expect(model.batchNormFolding().refreshes).toBe(1);
    expect(again.data).toEqual(folded.data);

    const plain = await unfolded(model, input);
    expect(relativeError(folded.data, plain.data)).toBeLessThanOrEqual(TOLERANCE);
    expect(relativeError(folded.data, reference.data)).toBeLessThanOrEqual(TOLERANCE);
    expect(relativeError(plain.data, reference.data)).toBeLessThanOrEqual(TOLERANCE);
    // The comparison can fail: the fresh model's own weights give other logits.
    const fresh = createModel(name, options as never).eval();
    expect(relativeError((await fresh.forward(input)).data, reference.data)).toBeGreaterThan(0.01);
    fresh.dispose();

    // Folding leaves the state dict as it was.
    const saved = path.join(caseDir, 'after.safetensors');
    await model.saveSafetensors(saved);
    const result = oracle<{ differing: string[] }>('forward', {
      model: name, options: JSON.stringify(options), weights: saved,
      input: path.join(caseDir, 'input.safetensors'), out: path.join(caseDir, 'out.safetensors'),
      expect: path.join(caseDir, 'weights.safetensors'),
    });
    expect(result.differing).toEqual([]);
    model.dispose();
  });
});

describe('the folded copy follows the weights', () => {
  const options = { numClasses: 10, middleFlowBlocks: 1 };
  const size = 48;
  const input: TensorData = {
    shape: [2, 3, size, size],
    data: Float32Array.from({ length: 2 * 3 * size * size }, (_, i) => Math.sin(i * 0.37) + 0.1 * Math.cos(i * 0.011)),
  };

  it('is recomputed after a training step, and matches the unfolded model again', async () => {
    const model = createModel('xception', options).eval();
    const before = await model.forward(input);
    const refreshes = model.batchNormFolding().refreshes;

    const trainer = new Trainer({
      model, dataset: 'synthetic', synthetic: { trainSize: 16, valSize: 4, testSize: 4 },
      epochs: 1, batchSize: 8, preprocessing: { crop: 32, resize: 36 }, device: 'cpu',
      outDir: path.join(dir, 'train'),
    });
    await trainer.fit();
    trainer.dispose();
    model.eval();

    const after = await model.forward(input);
    // The validation pass after the epoch and this forward refolded the trained weights.
    expect(model.batchNormFolding().refreshes).toBeGreaterThan(refreshes);
    expect(relativeError(after.data, before.data)).toBeGreaterThan(1e-3);
    expect(relativeError(after.data, (await unfolded(model, input)).data)).toBeLessThanOrEqual(TOLERANCE);
    model.dispose();
  });

  it('is recomputed after a training-mode pass moves the BatchNorm statistics', async () => {
    const model = createModel('xception', options).eval();
    const before = await model.forward(input);
    // Only the running statistics change here (no optimizer step), in place.
    model.train();
    await model.forward({ ...input, data: input.data.map((v) => 2 * v + 0.5) });
    model.eval();
    const after = await model.forward(input);
    expect(relativeError(after.data, before.data)).toBeGreaterThan(1e-3);
    expect(relativeError(after.data, (await unfolded(model, input)).data)).toBeLessThanOrEqual(TOLERANCE);
    model.dispose();
  });

  it('is recomputed after loading weights', async () => {
    const source = createModel('xception', options);
    const file = path.join(dir, 'other.safetensors');
    await source.saveSafetensors(file);
    const expected = await source.eval().forward(input);
    source.dispose();

    const model = createModel('xception', options).eval();
    const before = await model.forward(input);
    expect(relativeError(before.data, expected.data)).toBeGreaterThan(1e-3);
    await model.loadSafetensors(file);
    expect(relativeError((await model.forward(input)).data, expected.data)).toBeLessThanOrEqual(TOLERANCE);
    model.dispose();
  });

  it('can be switched off, and rejects a non-boolean', async () => {
    const model = createModel('inception_v3', { numClasses: 10, auxLogits: false }).eval();
    model.setBatchNormFolding(false);
    await model.forward({ shape: [1, 3, 75, 75], data: new Float32Array(3 * 75 * 75) });
    expect(model.batchNormFolding()).toEqual({ enabled: false, pairs: 94, refreshes: 0 });
    expect(() => model.setBatchNormFolding('yes' as never)).toThrow(/expects true or false/);
    model.dispose();
  });
});

// Eval passes call oneDNN directly for their convolutions (native/onednn_conv.h): weights reordered
// once, primitives compiled per input shape, ReLU fused; and for their poolings (native/onednn_pool.h).
// It must give libtorch's logits.
describe('inference convolutions on oneDNN', () => {
  const engines = [
    { label: 'Xception', name: 'xception' as ModelName, options: { numClasses: 10, middleFlowBlocks: 2 } },
    // Padded stem with bias, skips with bias and no BatchNorm (run as plain convolutions).
    { label: 'Xception, notebook variant, ELU', name: 'xception' as ModelName, options: { numClasses: 10, middleFlowBlocks: 1, variant: 'notebook', intermediateActivation: 'elu' } },
    { label: 'Inception V3', name: 'inception_v3' as ModelName, options: { numClasses: 10, auxLogits: false } },
  ];

  it('are what this build runs (the documented set-up installs libdnnl-dev)', () => {
    const info = runtimeInfo();
    expect(info.onednnVersion).toMatch(/^2\.\d+\.\d+$/);
    expect(info.inferenceConvolutions).toBe('onednn');
  });

  it.each(engines)('$label: the logits equal libtorch\'s convolutions and poolings\' for two input shapes, alternately', async ({ name, options }) => {
    const model = createModel(name, options as never).eval();
    // Non-square, odd and even sizes: oneDNN's right/bottom padding must reproduce libtorch's floor.
    const inputs = [[3, 3, 80, 97], [1, 3, 96, 96], [3, 3, 80, 97]].map((shape) => ({
      shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => Math.sin(i * 0.37) + 0.1 * Math.cos(i * 0.011)),
    }));
    try {
      for (const input of inputs) {
        setInferenceConvolutions('onednn');
        const direct = await model.forward(input);
        setInferenceConvolutions('libtorch');
        const viaLibtorch = await model.forward(input);
        expect(direct.shape).toEqual(viaLibtorch.shape);
        expect(relativeError(direct.data, viaLibtorch.data)).toBeLessThanOrEqual(1e-5);
        // and the unfolded model's, within folding's tolerance
        expect(relativeError(direct.data, (await unfolded(model, input)).data)).toBeLessThanOrEqual(TOLERANCE);
      }
    } finally {
      setInferenceConvolutions('onednn');
      model.dispose();
    }
  });

  it('rejects an unknown engine', () => {
    expect(() => setInferenceConvolutions('mkl' as never)).toThrow(/expected 'onednn' or 'libtorch'/);
    expect(runtimeInfo().inferenceConvolutions).toBe('onednn');
  });
});

// Eval passes on the CPU split by batch over single-threaded helpers (native/split_pass.h): the
// logits must be those of one whole pass, for batches that split evenly, unevenly, or not at all.
describe('eval passes split by batch', () => {
  const models = [
    { label: 'Xception', name: 'xception' as ModelName, options: { numClasses: 10, middleFlowBlocks: 2 } },
    { label: 'Inception V3', name: 'inception_v3' as ModelName, options: { numClasses: 10, auxLogits: false } },
  ];

  it('are what runs by default', () => {
    expect(runtimeInfo().inferencePasses).toBe('split');
  });

  it.each(models)('$label: the logits equal one whole pass\'s, image by image', async ({ name, options }) => {
    const threads = runtimeInfo().threads;
    const model = createModel(name, options as never).eval();
    try {
      for (const batch of [2 * threads, 2 * threads + 1, 1]) {
        const shape = [batch, 3, 80, 97];
        const input = { shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => Math.sin(i * 0.29) + 0.1 * Math.cos(i * 0.013)) };
        const before = native().info().splitPasses;
        const split = await model.forward(input);
        // It did split when the machine has several threads and the batch is large enough.
        expect(native().info().splitPasses - before).toBe(threads >= 2 && batch >= threads ? 1 : 0);
        setInferencePasses('whole');
        let whole: TensorData;
        try {
          whole = await model.forward(input);
          expect(native().info().splitPasses - before).toBe(threads >= 2 && batch >= threads ? 1 : 0);
        } finally {
          setInferencePasses('split');
        }
        expect(split.shape).toEqual(whole.shape);
        for (let i = 0; i < batch; i++) {
          const row = (t: TensorData) => t.data.subarray(i * 10, (i + 1) * 10);
          expect(relativeError(row(split), row(whole))).toBeLessThanOrEqual(1e-5);
        }
      }
    } finally {
      model.dispose();
    }
  });

  it('rejects an unknown mode', () => {
    expect(() => setInferencePasses('threads' as never)).toThrow(/expected 'split' or 'whole'/);
    expect(runtimeInfo().inferencePasses).toBe('split');
  });
});
