// 1x1 convolutions of CPU training passes as oneDNN matrix products (native/pointwise_matmul.h): the same output
// and gradients as libtorch's convolution, used exactly where they apply, and by a model's training epoch.
// (Against PyTorch itself, the data-parallel test trains Xception channels-last with them: test/distributed.test.ts.)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native } from '../lib/native';
import type { FloatTensor } from '../lib/native-test-hooks';
import { runtimeInfo, setTrainingConvolutions } from '../lib/runtime';
import { Trainer } from '../lib/trainer';
import { randomTensor } from './helpers/optim-oracle';
import { relativeError } from './helpers/tensors';

interface ConvCase { input: number[]; weight: number[]; stride?: number; padding?: number; groups?: number; channelsLast?: boolean }

function outputShape(c: ConvCase): number[] {
  const [n, , h, w] = c.input;
  const [o, , kh, kw] = c.weight;
  const size = (x: number, k: number) => Math.floor((x + 2 * (c.padding ?? 0) - k) / (c.stride ?? 1)) + 1;
  return [n, o, size(h, kh), size(w, kw)];
}

/** The convolution and its gradients run as libtorch's convolution and as the training pass runs it now. */
function bothWays(c: ConvCase) {
  const args = {
    input: [randomTensor(c.input, 1)], weight: [randomTensor(c.weight, 2, 0.5)], gradOutput: [randomTensor(outputShape(c), 3)],
    stride: c.stride, padding: c.padding, groups: c.groups, channelsLast: c.channelsLast,
  };
  setTrainingConvolutions('libtorch');
  const reference = native().trainingConvolution(args);
  setTrainingConvolutions('onednn');
  const ours = native().trainingConvolution(args);
  return { reference, ours };
}

type Result = Record<'output' | 'gradInput' | 'gradWeight', FloatTensor>;
const errors = (ours: Result, reference: Result) => ({
  output: relativeError(ours.output.data, reference.output.data),
  gradInput: relativeError(ours.gradInput.data, reference.gradInput.data),
  gradWeight: relativeError(ours.gradWeight.data, reference.gradWeight.data),
});

afterEach(() => setTrainingConvolutions('onednn'));

describe('1x1 convolutions of training passes as matrix products', () => {
  it('are on by default where the addon has oneDNN (as it has wherever the README\'s set-up ran)', () => {
    expect(native().info().onednnVersion).not.toBe('');
    expect(runtimeInfo().trainingConvolutions).toBe('onednn');
  });

  it.each([
    { label: 'Xception-like, 24 -> 40 channels at 5x7', input: [2, 24, 5, 7], weight: [40, 24, 1, 1] },
    { label: 'one image, a 1x9 map, 3 -> 5 channels', input: [1, 3, 1, 9], weight: [5, 3, 1, 1] },
    { label: 'more images than channels, 16 -> 8', input: [9, 16, 3, 3], weight: [8, 16, 1, 1] },
  ])('$label: output and both gradients equal libtorch\'s convolution\'s (1e-5 relative)', (c) => {
    const { reference, ours } = bothWays(c);
    expect(reference.products).toBe(false);
    expect(ours.products).toBe(true);
    expect(ours.output.shape).toEqual(reference.output.shape);
    expect(ours.gradWeight.shape).toEqual(c.weight);
    const e = errors(ours, reference);
    expect(e.output).toBeLessThan(1e-5);
    expect(e.gradInput).toBeLessThan(1e-5);
    expect(e.gradWeight).toBeLessThan(1e-5);
  });

  it.each([
    { label: 'strided (a skip connection)', input: [2, 8, 6, 6], weight: [16, 8, 1, 1], stride: 2 },
    { label: '3x3', input: [2, 8, 6, 6], weight: [8, 8, 3, 3], padding: 1 },
    { label: 'padded 1x1', input: [2, 8, 6, 6], weight: [8, 8, 1, 1], padding: 1 },
    { label: 'grouped', input: [2, 8, 6, 6], weight: [8, 4, 1, 1], groups: 2 },
    { label: 'an NCHW input', input: [2, 8, 6, 6], weight: [16, 8, 1, 1], channelsLast: false },
    // Channels-last-contiguous too, but libtorch calls it NCHW: an NCHW run keeps libtorch's kernels throughout.
    { label: 'an NCHW input of 1x1 maps', input: [2, 8, 1, 1], weight: [16, 8, 1, 1], channelsLast: false },
  ])('$label: left to libtorch', (c) => {
    const { reference, ours } = bothWays(c);
    expect(ours.products).toBe(false);
    expect(errors(ours, reference)).toEqual({ output: 0, gradInput: 0, gradWeight: 0 });
  });

  it('setTrainingConvolutions(\'libtorch\') switches them off, and a bad value is refused', () => {
    setTrainingConvolutions('libtorch');
    expect(runtimeInfo().trainingConvolutions).toBe('libtorch');
    expect(bothWays({ input: [2, 8, 3, 3], weight: [4, 8, 1, 1] }).reference.products).toBe(false);
    expect(() => setTrainingConvolutions('mkl' as 'onednn')).toThrow(/expected 'onednn' or 'libtorch'/);
  });

  it('a Trainer\'s epoch runs its 1x1 convolutions as products, and learns', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-training-convolutions-'));
    try {
      const before = native().info().pointwiseMatmulCalls;
      const trainer = new Trainer({
        model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic',
        synthetic: { trainSize: 64, valSize: 16, testSize: 16, difficulty: 'easy' }, epochs: 2, batchSize: 16,
        preprocessing: { crop: 32, resize: 36 }, outDir: dir, device: 'cpu', threads: 2,
      });
      const history = await trainer.fit();
      trainer.dispose();
      // Xception with one middle-flow block has 13 pointwise convolutions (2 in each entry-flow block, 3 in the
      // middle-flow one, 2 in the exit-flow block, then conv3's and conv4's; its skip convolutions are strided).
      // At 32x32 conv3 and conv4 see 1x1 maps, which libtorch lays out as NCHW, so 11 run as products in each of the
      // 8 training batches, and none in evaluation, which runs without gradients.
      expect(native().info().pointwiseMatmulCalls - before).toBe(11 * 8);
      expect(history.epochs[1].trainLoss).toBeLessThan(history.epochs[0].trainLoss);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
