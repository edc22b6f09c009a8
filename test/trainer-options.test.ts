// resolveTrainerOptions: the one place where a Trainer's options become the settings a run uses and
// records; pure given the machine's facts, so both a CPU and a CUDA machine are checked here.
import { resolveTrainerOptions, TRAINER_DEFAULTS, Xception } from '../lib';

const cpu = { cudaAvailable: false, threads: 2 };
const gpu = { cudaAvailable: true, threads: 16 };

describe('resolveTrainerOptions', () => {
  it('fills in every default once, and resolves auto to the CPU', () => {
    expect(resolveTrainerOptions({ model: 'xception' }, cpu)).toEqual({
      model: 'xception', modelOptions: { numClasses: 10 }, dataset: 'cifar10', dataDir: null, synthetic: null, imageFolder: null,
      epochs: 10, batchSize: 128, evalBatchSize: 128,
      optimizer: { type: 'adam', lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0 },
      schedule: 'constant', labelSmoothing: 0, amp: 'off', device: 'cpu',
      preprocessing: { resize: 320, evalResize: 299, crop: 299, flip: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], strategy: 'auto' },
      seed: 0, auxLossWeight: 0.4, valSize: 5000, trainLimit: null, evalLimit: null, threads: 2,
      channelsLast: true, cudnnBenchmark: true, fusedAdam: true, progressEvery: 1, initWeights: null, freezeBackbone: false, distributed: null,
    });
  });

  it('on a CUDA machine: fp16, channels_last and sparse progress reads', () => {
    const s = resolveTrainerOptions({ model: 'inception_v3', modelOptions: { auxLogits: false } }, gpu);
    expect(s).toMatchObject({ device: 'cuda', amp: 'fp16', channelsLast: true, progressEvery: TRAINER_DEFAULTS.progressEvery.cuda, threads: 16 });
    expect(s.modelOptions).toEqual({ numClasses: 10, auxLogits: false });
    // What the caller chose wins.
    expect(resolveTrainerOptions({ model: 'xception', device: 'cpu', amp: 'bf16', channelsLast: true }, gpu))
      .toMatchObject({ device: 'cpu', amp: 'bf16', channelsLast: true, progressEvery: 1 });
  });

  it('a model object brings its own options; a crop without a resize keeps the 320:299 ratio', () => {
    const model = new Xception({ numClasses: 7, middleFlowBlocks: 1 });
    const s = resolveTrainerOptions({ model, preprocessing: { crop: 64 }, batchSize: 16 }, cpu);
    expect(s.modelOptions).toMatchObject({ numClasses: 7, middleFlowBlocks: 1 });
    expect(s.preprocessing).toMatchObject({ crop: 64, resize: 68, evalResize: 64 });
    expect(s.evalBatchSize).toBe(16);
    model.dispose();
  });

  it("an image folder: its crop options' defaults, a tenth held out, one output per class unless given", () => {
    const s = resolveTrainerOptions({ model: 'xception', dataset: 'folder', dataDir: 'photos', imageFolder: { cropPct: 0.9 } }, cpu);
    expect(s.imageFolder).toEqual({
      cropPct: 0.9, resize: null, interpolation: 'bilinear', scale: [0.08, 1], ratio: [3 / 4, 4 / 3], prefetch: 4, skipBadImages: false, cacheImages: false,
    });
    expect(s.valSize).toBeNull();
    expect(s.modelOptions.numClasses).toBeUndefined();
    expect(resolveTrainerOptions({ model: 'xception', dataset: 'folder', dataDir: 'p', modelOptions: { numClasses: 5 } }, cpu).modelOptions.numClasses).toBe(5);
  });

  it('refuses what is out of range, naming the option', () => {
    const bad: Array<[object, RegExp]> = [
      [{ epochs: 0 }, /epochs must be a positive integer/],
      [{ batchSize: 1 }, /batchSize must be an integer of at least 2 \(BatchNorm/],
      [{ optimizer: { lr: -1 } }, /lr must be a positive number/],
      [{ amp: 'fp8' }, /amp must be 'auto', 'fp16', 'bf16' or 'off'/],
      [{ outDir: ' ' }, /outDir must name a folder/],
      [{ fusedAdam: 1 }, /fusedAdam must be true or false/],
      [{ freezeBackbone: 'yes' }, /freezeBackbone must be true or false/],
      [{ preprocessing: { crop: 4096 } }, /preprocessing.crop must be at most 2048/],
      [{ dataset: 'folder' }, /dataset 'folder' needs dataDir/],
      [{ dataset: 'folder', dataDir: 'd', imageFolder: { cropPct: 1.5 } }, /cropPct must be in \(0, 1\]/],
      [{ dataset: 'folder', dataDir: 'd', imageFolder: { scale: [0.5, 0.1] } }, /scale must be \[low, high\]/],
      [{ dataset: 'folder', dataDir: 'd', imageFolder: { prefetch: 0 } }, /prefetch must be a positive integer/],
    ];
    for (const [extra, message] of bad) expect(() => resolveTrainerOptions({ model: 'xception', ...extra } as never, cpu)).toThrow(message);
    expect(() => resolveTrainerOptions({ model: 'resnet' } as never, cpu)).toThrow(TypeError);
  });

  it('data-parallel: the group from the environment, the GPU of the local rank, a global batch that must divide', () => {
    const env = { RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node0', MASTER_PORT: '29500' };
    const s = resolveTrainerOptions({ model: 'xception', distributed: 'env', device: 'cuda', batchSize: 64 }, gpu, env);
    expect(s.device).toBe('cuda:1');
    expect(s.distributed).toMatchObject({ backend: 'nccl', rank: 3, worldSize: 4, localRank: 1, isStoreServer: false, masterAddr: 'node0' });
    expect(resolveTrainerOptions({ model: 'xception', distributed: 'env' }, cpu, env).distributed).toMatchObject({ backend: 'gloo' });
    // Alone when WORLD_SIZE is not above 1.
    expect(resolveTrainerOptions({ model: 'xception', distributed: 'env' }, cpu, {}).distributed).toBeNull();
    expect(() => resolveTrainerOptions({ model: 'xception', distributed: 'env', batchSize: 30 }, cpu, env)).toThrow(/global batch and must divide evenly across the 4 processes/);
    // Channels-last is the default with a group as alone, and NCHW can be asked for.
    expect(s.channelsLast).toBe(true);
    expect(resolveTrainerOptions({ model: 'xception', distributed: 'env', batchSize: 64 }, cpu, {}).channelsLast).toBe(true);
    expect(resolveTrainerOptions({ model: 'xception', distributed: 'env', batchSize: 64, channelsLast: false }, cpu, env).channelsLast).toBe(false);
  });
});
