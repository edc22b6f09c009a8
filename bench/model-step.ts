// One measurement of bench/models.ts or bench/gpu.ts in a process of its own (so its peak memory is
// its own): timed training steps, or eval passes as users run them — `model.forward()` called from
// JavaScript on a Float32Array, the result copied back — of one model. Prints the same JSON as the
// PyTorch side.
//
//   model-step.ts <model> <train|infer> <size> <batch> <warmup> <steps> <threads> [device] [amp] [channelsLast]
import { benchmarkSteps } from '../lib/benchmark';
import { createModel, InceptionV3, ModelName, Xception } from '../lib/models';
import { startPeakMemory } from '../lib/peak-memory';
import { createRng } from '../lib/random';
import { native } from '../lib/native';
import { setNumThreads } from '../lib/runtime';
import { cpuSnapshot, othersShare, ownCpuSeconds } from './interference';

async function main(): Promise<void> {
  const [model, mode, size, batch, warmup, steps, threads, device = 'cpu', amp = 'off', channelsLast = 'true'] = process.argv.slice(2);
  setNumThreads(Number(threads));
  native().manualSeed(0);
  // On the CPU benchmark Inception V3 runs without its aux head (96x96 inputs are too small for it);
  // on the GPU at 299 with it, as torchvision trains it.
  const options = model === 'inception_v3' ? { numClasses: 10, auxLogits: device !== 'cpu' } : { numClasses: 10 };
  const net = createModel(model as ModelName, options);
  if (device !== 'cpu') net.to(device as 'cuda');
  const before = cpuSnapshot();
  const cpuBefore = ownCpuSeconds();
  const r = mode === 'train'
    ? await benchmarkSteps(net, {
      mode: 'train', batch: Number(batch), size: Number(size), warmup: Number(warmup), steps: Number(steps),
      amp: amp as 'off' | 'fp16' | 'bf16', channelsLast: channelsLast === 'true',
    })
    : await timeForward(net, Number(batch), Number(size), Number(warmup), Number(steps), device);
  const after = cpuSnapshot();
  const others = before && after ? othersShare(before, after, ownCpuSeconds() - cpuBefore) : null;
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({
    imagesPerSecond: r.imagesPerSecond, seconds: r.seconds, images: r.images, peakRssMb, peakMemory: r.peakMemory, othersShare: others,
  }));
}

/** model.forward() from JavaScript, as a user calls it: eval mode, a fixed random batch. */
async function timeForward(net: Xception | InceptionV3, batch: number, size: number, warmup: number, steps: number, device: string) {
  net.eval();
  const random = createRng(0);
  const x = { shape: [batch, 3, size, size], data: Float32Array.from({ length: batch * 3 * size * size }, () => random() * 2 - 1) };
  for (let i = 0; i < warmup; i++) await net.forward(x);
  const probe = startPeakMemory(device);
  const start = process.hrtime.bigint();
  for (let i = 0; i < steps; i++) await net.forward(x);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const images = batch * steps;
  const peak = device === 'cpu' ? undefined : probe.read()?.bytes;
  return { imagesPerSecond: images / seconds, seconds, images, peakMemory: peak };
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
