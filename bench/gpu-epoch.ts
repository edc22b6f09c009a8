// Our side of bench/gpu.ts's end-to-end measurement, in a process of its own: epochs of the Trainer
// over random CIFAR-sized images on CUDA (preprocessing and augmentation on the GPU, fp16 + GradScaler,
// channels_last); the last epoch's training images/s.
//
//   gpu-epoch.ts <model> <images> <batch> <epochs>
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Trainer } from '../lib/trainer';
import { ModelName } from '../lib/models';

async function main(): Promise<void> {
  const [model, images, batch, epochs] = process.argv.slice(2);
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-bench-epoch-'));
  const trainer = new Trainer({
    model: model as ModelName, dataset: 'synthetic', synthetic: { trainSize: Number(images), valSize: 128, testSize: 128 },
    epochs: Number(epochs), batchSize: Number(batch), amp: 'fp16', device: 'cuda', outDir,
  });
  trainer.on('epoch', (e: { epoch: number; imagesPerSecond: number }) => console.error(`epoch ${e.epoch}: ${e.imagesPerSecond.toFixed(1)} img/s`));
  const history = await trainer.fit();
  trainer.dispose();
  fs.rmSync(outDir, { recursive: true, force: true });
  const last = history.epochs[history.epochs.length - 1];
  console.log(JSON.stringify({ imagesPerSecond: last.imagesPerSecond, seconds: last.seconds, images: Number(images) }));
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
