// One measurement of bench/models.ts in a process of its own (so its peak RSS is its own):
// timed fp32 training steps or eval passes of one model. Prints the same JSON as the PyTorch side.
import { createModel, ModelName } from '../lib/models';
import { native } from '../lib/native';
import { setNumThreads } from '../lib/runtime';

async function main(): Promise<void> {
  const [model, mode, size, batch, warmup, steps, threads] = process.argv.slice(2);
  setNumThreads(Number(threads));
  native().manualSeed(0);
  const net = createModel(model as ModelName, model === 'inception_v3' ? { numClasses: 10, auxLogits: false } : { numClasses: 10 });
  const r = await native().benchmarkSteps(net.nativeHandle, {
    batch: Number(batch), size: Number(size), warmup: Number(warmup), steps: Number(steps), train: mode === 'train',
  });
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  console.log(JSON.stringify({ imagesPerSecond: r.images / r.seconds, seconds: r.seconds, peakRssMb }));
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
