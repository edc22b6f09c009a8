// Model construction, parameter counts and state-dict names against the Python references,
// option and input validation, and the lifecycle of the native handle.
import { createModel, InceptionV3, runtimeInfo, Xception } from '../lib';
import { oracle } from './helpers/python';

describe('parameter counts (REFERENCES.md, exact)', () => {
  const cases: Array<[string, () => Xception | InceptionV3, number]> = [
    ['Xception paper, 1000 classes', () => new Xception(), 22_855_952],
    ['Xception paper, 10 classes', () => new Xception({ numClasses: 10 }), 20_827_442],
    ['Xception notebook, 10 classes', () => new Xception({ numClasses: 10, variant: 'notebook' }), 20_825_402],
    ['Inception V3, 1000 classes, aux', () => new InceptionV3(), 27_161_264],
    ['Inception V3, 10 classes, aux', () => new InceptionV3({ numClasses: 10 }), 24_371_444],
    ['Inception V3, 10 classes, no aux', () => new InceptionV3({ numClasses: 10, auxLogits: false }), 21_806_058],
  ];
  it.each(cases)('%s', (_label, make, expected) => {
    const model = make();
    expect(model.parameterCount()).toBe(expected);
    model.dispose();
  });

  it('does not depend on the intermediate activation (it has no parameters)', () => {
    for (const intermediateActivation of ['relu', 'elu'] as const) {
      const m = new Xception({ numClasses: 10, intermediateActivation });
      expect(m.parameterCount()).toBe(20_827_442);
      m.dispose();
    }
  });
});

describe('state-dict names', () => {
  it('Inception V3 lists exactly torchvision\'s keys in torchvision\'s order', () => {
    for (const options of [{ numClasses: 10 }, { numClasses: 10, auxLogits: false }]) {
      const ref = oracle<{ keys: string[]; parameters: number }>('keys', { model: 'inception_v3', options: JSON.stringify(options) });
      const model = new InceptionV3(options);
      expect(model.stateDictKeys()).toEqual(ref.keys);
      expect(model.parameterCount()).toBe(ref.parameters);
      model.dispose();
    }
  });

  it('Xception lists the Python reference\'s keys (timm legacy_xception names)', () => {
    for (const options of [{}, { variant: 'notebook' as const }, { middleFlowBlocks: 2 }]) {
      const ref = oracle<{ keys: string[]; parameters: number }>('keys', { model: 'xception', options: JSON.stringify(options) });
      const model = new Xception(options);
      expect(model.stateDictKeys()).toEqual(ref.keys);
      expect(model.parameterCount()).toBe(ref.parameters);
      model.dispose();
    }
  });

  it('Xception uses the timm names and counts of REFERENCES.md', () => {
    const model = new Xception();
    const keys = model.stateDictKeys();
    expect(keys).toHaveLength(276);
    expect(keys.filter((k) => !/running_|num_batches_tracked/.test(k))).toHaveLength(156);
    for (const name of [
      'conv1.weight', 'bn1.running_mean', 'conv2.weight', 'bn2.num_batches_tracked',
      'block1.skip.weight', 'block1.skipbn.running_var',
      'block1.rep.0.conv1.weight', 'block1.rep.0.pointwise.weight', 'block1.rep.1.weight', 'block1.rep.3.pointwise.weight', 'block1.rep.4.bias',
      'block2.rep.1.conv1.weight', 'block2.rep.2.weight', 'block2.rep.4.pointwise.weight', 'block2.rep.5.running_mean',
      'block4.rep.7.pointwise.weight', 'block4.rep.8.num_batches_tracked', 'block11.rep.8.weight',
      'block12.skip.weight', 'block12.skipbn.weight', 'block12.rep.4.pointwise.weight',
      'conv3.conv1.weight', 'conv3.pointwise.weight', 'bn3.weight', 'conv4.pointwise.weight', 'bn4.bias', 'fc.weight', 'fc.bias',
    ]) {
      expect(keys).toContain(name);
    }
    // Middle-flow blocks have identity skips; block12 grows at its last SepConv (728 -> 1024).
    expect(keys).not.toContain('block4.skip.weight');
    expect(keys).not.toContain('block13.rep.1.conv1.weight');
    model.dispose();
  });
});

describe('options', () => {
  it('rejects bad options with a clear message', () => {
    expect(() => new Xception({ numClasses: 0 })).toThrow(/numClasses must be an integer from 1 to 100000; got 0/);
    expect(() => new Xception({ numClasses: 2.5 })).toThrow(/numClasses must be an integer from 1 to 100000; got 2.5/);
    expect(() => new Xception({ intermediateActivation: 'tanh' as never })).toThrow(/'none' or 'relu' or 'elu'/);
    expect(() => new Xception({ variant: 'v2' as never })).toThrow(/'paper' or 'notebook'/);
    expect(() => new Xception({ dropout: 1 })).toThrow(/dropout must be a number in \[0, 1\)/);
    expect(() => new Xception({ numclasses: 10 } as never)).toThrow(/unknown Xception option 'numclasses'/);
    expect(() => new InceptionV3({ auxLogits: 'yes' as never })).toThrow(/auxLogits must be true or false/);
    expect(() => createModel('resnet' as never)).toThrow(/unknown model 'resnet'/);
  });

  it('createModel builds either model', () => {
    const x = createModel('xception', { numClasses: 10 });
    const i = createModel('inception_v3', { numClasses: 10, auxLogits: false });
    expect(x).toBeInstanceOf(Xception);
    expect(i.name).toBe('inception_v3');
    expect(i.parameterCount()).toBe(21_806_058);
    x.dispose();
    i.dispose();
  });
});

describe('forward input checks', () => {
  const model = new Xception({ numClasses: 10 }).eval();
  const inception = new InceptionV3({ numClasses: 10 }).eval();
  afterAll(() => {
    model.dispose();
    inception.dispose();
  });

  it('returns logits of shape [N, classes]', async () => {
    const y = await model.forward({ shape: [2, 3, 32, 32], data: new Float32Array(2 * 3 * 32 * 32).fill(0.5) });
    expect(y.shape).toEqual([2, 10]);
    expect(y.data).toHaveLength(20);
    expect(Array.from(y.data).every(Number.isFinite)).toBe(true);
  });

  it('names the expected shape for a wrong rank, channel count or size', async () => {
    await expect(model.forward({ shape: [3, 32, 32], data: new Float32Array(3 * 32 * 32) }))
      .rejects.toThrow(/Xception expects input of shape \[N, 3, H, W\].*got \[3, 32, 32\]/);
    await expect(model.forward({ shape: [1, 1, 32, 32], data: new Float32Array(32 * 32) }))
      .rejects.toThrow(/\[N, 3, H, W\].*got \[1, 1, 32, 32\]/);
    await expect(model.forward({ shape: [1, 3, 6, 6], data: new Float32Array(3 * 36) }))
      .rejects.toThrow(/H, W >= 7/);
    await expect(inception.forward({ shape: [1, 3, 74, 74], data: new Float32Array(3 * 74 * 74) }))
      .rejects.toThrow(/InceptionV3 expects .*H, W >= 75.*got \[1, 3, 74, 74\]/);
  });

  it('rejects data whose length does not match the shape, and non-float data', async () => {
    await expect(model.forward({ shape: [1, 3, 32, 32], data: new Float32Array(10) })).rejects.toThrow(/10 values but its shape needs 3072/);
    await expect(model.forward({ shape: [1, 3, 32, 32], data: new Array(3072).fill(0) as never })).rejects.toThrow(/Float32Array/);
    await expect(model.forward({ shape: [1, 3, -32, 32], data: new Float32Array(3072) })).rejects.toThrow(/non-negative integers/);
  });

  it('accepts the documented minimum sizes', async () => {
    expect(inception.minInputSize()).toBe(75);
    const y = await inception.forward({ shape: [1, 3, 75, 75], data: new Float32Array(3 * 75 * 75) });
    expect(y.shape).toEqual([1, 10]);
    const notebook = new Xception({ numClasses: 10, variant: 'notebook' }).eval();
    expect(notebook.minInputSize()).toBe(1);
    expect((await notebook.forward({ shape: [1, 3, 1, 1], data: new Float32Array(3) })).shape).toEqual([1, 10]);
    notebook.dispose();
  });
});

describe('benchmark steps (bench/)', () => {
  it('times training steps and inference passes on a fixed batch, and restores the mode', async () => {
    const { native } = await import('../lib/native');
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 0 }).eval();
    for (const train of [true, false]) {
      const r = await native().benchmarkSteps(model.nativeHandle, { batch: 2, size: 32, warmup: 1, steps: 2, train });
      expect(r.images).toBe(4);
      expect(r.seconds).toBeGreaterThan(0);
    }
    expect(model.training).toBe(false);
    expect(() => native().benchmarkSteps(model.nativeHandle, { batch: 2, size: 5, warmup: 0, steps: 1, train: true }))
      .toThrow(/H, W >= 7/);
    model.dispose();
  });
});

describe('lifecycle and devices', () => {
  it('runs forward() off the event loop', async () => {
    const model = new InceptionV3({ numClasses: 10 }).eval();
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const started = Date.now();
    await model.forward({ shape: [2, 3, 299, 299], data: new Float32Array(2 * 3 * 299 * 299) });
    clearInterval(timer);
    // The timer kept firing while libtorch computed on a worker thread.
    expect(ticks).toBeGreaterThan(Math.floor((Date.now() - started) / 5 / 4));
    expect(ticks).toBeGreaterThan(3);
    model.dispose();
  });

  it('refuses to change a model while its forward() runs, and keeps the weights alive through dispose()', async () => {
    const model = new Xception({ numClasses: 10 }).eval();
    const pending = model.forward({ shape: [1, 3, 96, 96], data: new Float32Array(3 * 96 * 96) });
    expect(() => model.train()).toThrow(/while a forward\(\) or a training job is running/);
    model.dispose();
    expect((await pending).shape).toEqual([1, 10]);
    expect(() => model.parameterCount()).toThrow(/disposed/);
  });

  it('gives a clear error for CUDA on a machine without it, and accepts cpu and auto', () => {
    const model = new Xception({ numClasses: 10 });
    expect(model.to('cpu').device).toBe('cpu');
    expect(model.to('auto').device).toMatch(/^(cpu|cuda:?\d*)$/);
    if (!runtimeInfo().cudaAvailable) {
      expect(() => model.to('cuda')).toThrow(/CUDA is not available/);
    }
    expect(() => model.to('tpu' as never)).toThrow(/device must be 'cpu', 'cuda' or 'cuda:N'/);
    model.dispose();
  });

  it('counts multiply-accumulates like a forward hook on every conv and linear layer (eval, one image)', async () => {
    // Xception at 96: the same formula the published 8.36 G uses (out elements x in/groups x kernel).
    const model = new Xception({ numClasses: 10 });
    const at299 = await model.multiplyAccumulates(299);
    expect(Math.abs(at299 / 8.36e9 - 1)).toBeLessThan(0.005);
    expect(await model.multiplyAccumulates(150)).toBeLessThan(at299 / 3);
    model.dispose();
  });

  it('summary lists every stage with shapes, and its parameters add up to the total', async () => {
    const model = new InceptionV3({ numClasses: 10 });
    const { layers: rows, parameters, macs } = await model.summary(299);
    const byName = new Map(rows.map((r) => [r.name, r]));
    expect(byName.get('Conv2d_1a_3x3')?.outputShape).toEqual([1, 32, 149, 149]);
    expect(byName.get('Mixed_6e')?.outputShape).toEqual([1, 768, 17, 17]);
    expect(byName.get('AuxLogits')?.outputShape).toEqual([1, 10]);
    expect(byName.get('Mixed_7c')?.outputShape).toEqual([1, 2048, 8, 8]);
    expect(byName.get('fc')?.outputShape).toEqual([1, 10]);
    expect(rows.reduce((n, r) => n + r.parameters, 0)).toBe(model.parameterCount());
    expect(parameters).toBe(model.parameterCount());
    expect(macs).toBe(rows.filter((r) => !r.trainingOnly).reduce((n, r) => n + r.macs, 0));
    expect(model.training).toBe(true);  // restored after the eval-mode pass
    await expect(model.summary(50)).rejects.toThrow(/H, W >= 75/);
    model.dispose();
  });
});
