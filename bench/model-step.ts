// One measurement of bench/models.ts or bench/gpu.ts in a process of its own (so its peak memory is
// its own): timed training steps or eval passes of one model. Prints the same JSON as the PyTorch side.
//
//   model-step.ts <model> <train|infer> <size> <batch> <warmup> <steps> <threads> [device] [amp] [channelsLast]
import { benchmarkSteps } from '../lib/benchmark';
import { createModel, ModelName } from '../lib/models';
import { native } from '../lib/native';
import { setNumThreads } from '../lib/runtime';
import { cpuSnapshot, othersShare, ownCpuSeconds } from './interference';

async function main(): Promise<void> {
  const [model, mode, size, batch, warmup, steps, threads, device = 'cpu', amp = 'off', channelsLast = 'false'] = process.argv.slice(2);
  setNumThreads(Number(threads));
  native().manualSeed(0);
  // On the CPU benchmark Inception V3 runs without its aux head (96x96 inputs are too small for it);
  // on the GPU at 299 with it, as torchvision trains it.
  const options = model === 'inception_v3' ? { numClasses: 10, auxLogits: device !== 'cpu' } : { numClasses: 10 };
  const net = createModel(model as ModelName, options);
  if (device !== 'cpu') net.to(device as 'cuda');
  const before = cpuSnapshot();
  const cpuBefore = ownCpuSeconds();
  const r = await benchmarkSteps(net, {
    mode: mode === 'train' ? 'train' : 'infer', batch: Number(batch), size: Number(size), warmup: Number(warmup), steps: Number(steps),
    amp: amp as 'off' | 'fp16' | 'bf16', channelsLast: channelsLast === 'true',
  });
  const after = cpuSnapshot();
  const others = before && after ? othersShare(before, after, ownCpuSeconds() - cpuBefore) : null;
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({
    imagesPerSecond: r.imagesPerSecond, seconds: r.seconds, images: r.images, peakRssMb, peakMemory: r.peakMemory, othersShare: others,
  }));
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
