// GPU benchmark (`npm run bench:gpu`): on one CUDA GPU, in one run, each measurement in a process of
// its own, our native training against PyTorch eager in Python on the same GPU:
//  - training step: batch 128, 299x299, fp16 autocast + GradScaler, channels_last, cuDNN benchmark,
//    Adam; images/s, ratio ours/PyTorch, and peak GPU memory of each (bench/gpu_reference.py: timm's
//    legacy_xception and torchvision's inception_v3 with its aux head);
//  - end to end: epochs over 10,000 CIFAR-sized images including preprocessing and augmentation,
//    ours on the GPU against the reference notebook's pipeline (PIL transforms, DataLoader with 2
//    workers, the same model step); images/s of an epoch after warming up.
// Writes JSON (--out) and appends rows with the GPU's name to bench/RESULTS.md.
//
//   npm run bench:gpu -- [--models xception,inception_v3] [--batch 128] [--size 299] [--warmup 15] [--steps 30]
//                        [--repeats 1] [--images 10000] [--epochs 2] [--epoch-models xception,inception_v3] [--no-epoch]
//                        [--out FILE] [--no-record]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { runtimeInfo } from '../lib/runtime';
import { measure, Measurement } from './measure';
import { median } from './stats';

/** The first interpreter with a CUDA PyTorch: XCEPTION_TORCH_PYTHON, /usr/bin/python3, python3. */
function cudaPython(): { python: string; torch: string } {
  const candidates = process.env.XCEPTION_TORCH_PYTHON ? [process.env.XCEPTION_TORCH_PYTHON] : ['/usr/bin/python3', 'python3'];
  for (const python of candidates) {
    const r = spawnSync(python, ['-c', 'import torch, torchvision; assert torch.cuda.is_available(); print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python, torch: r.stdout.trim() };
  }
  throw new Error(`no Python with a CUDA PyTorch and torchvision among ${candidates.join(', ')}; set XCEPTION_TORCH_PYTHON`);
}

const mib = (bytes?: number) => (bytes === undefined ? NaN : bytes / 2 ** 20);

async function main(): Promise<void> {
  const opts = new Command('bench:gpu')
    .option('--models <list>', 'comma-separated models', 'xception,inception_v3')
    .option('--batch <n>', 'batch size', (v) => parseInt(v, 10), 128)
    .option('--size <n>', 'image size', (v) => parseInt(v, 10), 299)
    .option('--warmup <n>', 'untimed steps first (cuDNN benchmark tries its algorithms here)', (v) => parseInt(v, 10), 15)
    .option('--steps <n>', 'timed steps', (v) => parseInt(v, 10), 30)
    .option('--repeats <n>', 'measurements of each side; medians are reported', (v) => parseInt(v, 10), 1)
    .option('--images <n>', 'end to end: images per epoch', (v) => parseInt(v, 10), 10000)
    .option('--epochs <n>', 'end to end, ours: epochs (the first warms up, the last is timed)', (v) => parseInt(v, 10), 2)
    .option('--epoch-models <list>', 'models of the end-to-end measurement', 'xception,inception_v3')
    .option('--no-epoch', 'skip the end-to-end measurement')
    .option('--out <file>', 'write the results as JSON')
    .option('--no-record', 'do not append rows to bench/RESULTS.md')
    .parse(process.argv)
    .opts();
  const info = runtimeInfo();
  if (!info.cudaAvailable) throw new Error('bench:gpu needs a CUDA GPU visible to the addon (see `npx xception-torch doctor`)');
  const { python, torch } = cudaPython();
  const gpu = info.gpu?.name ?? 'CUDA GPU';
  const env = { ...process.env, TS_NODE_TRANSPILE_ONLY: '1', PYTHONUNBUFFERED: '1' };
  const ours = (script: string, args: string[], label: string) =>
    measure(process.execPath, ['-r', 'ts-node/register', path.join(__dirname, script), ...args], label, env);
  const reference = (args: string[], label: string) => measure(python, [path.join(__dirname, 'gpu_reference.py'), ...args], label, env);

  const steps = [];
  const epochs = [];
  for (const model of String(opts.models).split(',')) {
    const a: Measurement[] = [];
    const b: Measurement[] = [];
    for (let r = 0; r < opts.repeats; r++) {
      a.push(ours('model-step.ts', [model, 'train', String(opts.size), String(opts.batch), String(opts.warmup), String(opts.steps),
        String(os.cpus().length), 'cuda', 'fp16', 'true'], `ours ${model} step`));
      b.push(reference(['--model', model, '--mode', 'step', '--batch', String(opts.batch), '--size', String(opts.size),
        '--warmup', String(opts.warmup), '--steps', String(opts.steps)], `PyTorch ${model} step`));
      console.error(`${model} training step, run ${r + 1}: ours ${a[r].imagesPerSecond.toFixed(1)} img/s, PyTorch ${b[r].imagesPerSecond.toFixed(1)} img/s`);
    }
    const row = {
      model,
      oursImagesPerSecond: median(a.map((m) => m.imagesPerSecond)),
      pytorchImagesPerSecond: median(b.map((m) => m.imagesPerSecond)),
      oursPeakMemoryMiB: median(a.map((m) => mib(m.peakMemory))),
      pytorchPeakMemoryMiB: median(b.map((m) => mib(m.peakMemory))),
      ratio: 0,
    };
    row.ratio = row.oursImagesPerSecond / row.pytorchImagesPerSecond;
    steps.push(row);
    if (opts.epoch && String(opts.epochModels).split(',').includes(model)) {
      const e1 = ours('gpu-epoch.ts', [model, String(opts.images), String(opts.batch), String(opts.epochs)], `ours ${model} epoch`);
      const e2 = reference(['--model', model, '--mode', 'epoch', '--batch', String(opts.batch), '--images', String(opts.images),
        '--warmup', String(opts.warmup)], `notebook pipeline ${model} epoch`);
      console.error(`${model} end to end: ours ${e1.imagesPerSecond.toFixed(1)} img/s, notebook pipeline ${e2.imagesPerSecond.toFixed(1)} img/s`);
      epochs.push({ model, oursImagesPerSecond: e1.imagesPerSecond, notebookImagesPerSecond: e2.imagesPerSecond, ratio: e1.imagesPerSecond / e2.imagesPerSecond });
    }
  }
  const result = {
    date: new Date().toISOString().slice(0, 10),
    gpu,
    libtorch: info.libtorchVersion,
    pytorch: torch,
    cpu: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores`,
    settings: { batch: opts.batch, size: opts.size, warmup: opts.warmup, steps: opts.steps, repeats: opts.repeats, precision: 'fp16 autocast + GradScaler', channelsLast: true, cudnnBenchmark: true, images: opts.images, epochs: opts.epochs },
    steps,
    epochs,
  };
  console.log(JSON.stringify(result, null, 2));
  if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  if (opts.record) {
    const file = path.join(__dirname, 'RESULTS.md');
    let text = fs.readFileSync(file, 'utf8');
    if (!text.includes('## GPU (`npm run bench:gpu`)')) {
      text += `\n## GPU (\`npm run bench:gpu\`)

Training step: one fixed random batch, fp16 autocast + GradScaler, channels_last, cuDNN benchmark, Adam;
PyTorch eager: timm's \`legacy_xception\` and torchvision's \`inception_v3\` (aux head, loss + 0.4 aux),
\`torch.optim.Adam\` defaults. End to end: the last of ${opts.epochs} epochs over random CIFAR-sized images, ours
with preprocessing and augmentation on the GPU, the notebook's with PIL transforms in a DataLoader with
2 workers (after warm-up steps), the same training step. Each measurement in its own process.

| date | GPU | model | step img/s ours / PyTorch | ratio | peak GPU MiB ours / PyTorch | end to end img/s ours / notebook | ratio | libtorch / PyTorch |
|---|---|---|---|---|---|---|---|---|
`;
    }
    for (const s of steps) {
      const e = epochs.find((x) => x.model === s.model);
      text += `| ${result.date} | ${gpu} | ${s.model} | ${s.oursImagesPerSecond.toFixed(0)} / ${s.pytorchImagesPerSecond.toFixed(0)} | ${s.ratio.toFixed(2)} | ${s.oursPeakMemoryMiB.toFixed(0)} / ${s.pytorchPeakMemoryMiB.toFixed(0)} | ${e ? `${e.oursImagesPerSecond.toFixed(0)} / ${e.notebookImagesPerSecond.toFixed(0)}` : 'not run'} | ${e ? e.ratio.toFixed(2) : ''} | ${result.libtorch} / ${torch} |\n`;
    }
    fs.writeFileSync(file, text);
    console.error(`appended to ${file}`);
  }
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
