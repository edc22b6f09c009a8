// Model benchmark: training-step and inference images/s of Xception and Inception V3 (fp32, CPU)
// against PyTorch eager in Python on the same machine, in the same run, with the same threads,
// batch and image size. Each measurement runs in a process of its own (peak RSS is per side);
// medians over the repeats. PyTorch side: bench/model_reference.py with /usr/bin/python3. Each side
// reports the share of the CPUs other processes took during its timed steps; a measurement above
// --max-interference percent is run again once the machine is idle (bench/interference.ts), up to
// --retries times.
//
//   npm run bench -- [--size 96] [--batch 8] [--steps 5] [--warmup 2] [--repeats 3] [--threads N]
//                    [--max-interference 5] [--retries 5] [--out FILE] [--no-record]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { runtimeInfo } from '../lib/runtime';
import { InterferenceGuard, measureGuarded, Measurement } from './measure';
import { median } from './stats';

const PYTHON = process.env.XCEPTION_TORCH_PYTHON ?? '/usr/bin/python3';

async function main(): Promise<void> {
  const opts = new Command('bench')
    .option('--size <n>', 'image size', (v) => parseInt(v, 10), 96)
    .option('--batch <n>', 'batch size', (v) => parseInt(v, 10), 8)
    .option('--warmup <n>', 'untimed steps first', (v) => parseInt(v, 10), 2)
    .option('--steps <n>', 'timed steps', (v) => parseInt(v, 10), 5)
    .option('--repeats <n>', 'measurements of each side; medians are reported', (v) => parseInt(v, 10), 3)
    .option('--threads <n>', 'CPU threads for both sides', (v) => parseInt(v, 10), os.cpus().length)
    .option('--max-interference <percent>', 'rerun a measurement when other processes took more of the CPUs', (v) => parseFloat(v), 5)
    .option('--retries <n>', 'reruns of a disturbed measurement at most', (v) => parseInt(v, 10), 5)
    .option('--out <file>', 'write the results as JSON')
    .option('--no-record', 'do not append rows to bench/RESULTS.md')
    .parse(process.argv)
    .opts();
  const common = [String(opts.size), String(opts.batch), String(opts.warmup), String(opts.steps), String(opts.threads)];
  const guard: InterferenceGuard = { maxShare: opts.maxInterference / 100, retries: opts.retries };
  const rows = [];
  for (const model of ['xception', 'inception_v3']) {
    for (const mode of ['train', 'infer']) {
      const ours: Measurement[] = [];
      const torch: Measurement[] = [];
      for (let r = 0; r < opts.repeats; r++) {
        const [size, batch, warmup, steps, threads] = common;
        ours.push(await measureGuarded(process.execPath, ['-r', 'ts-node/register', path.join(__dirname, 'model-step.ts'), model, mode, size, batch, warmup, steps, threads], `ours ${model} ${mode}`, guard));
        torch.push(await measureGuarded(PYTHON, [path.join(__dirname, 'model_reference.py'), '--model', model, '--mode', mode, '--size', size,
          '--batch', batch, '--warmup', warmup, '--steps', steps, '--threads', threads], `PyTorch ${model} ${mode}`, guard));
        console.error(`${model} ${mode} run ${r + 1}: ours ${ours[r].imagesPerSecond.toFixed(2)} img/s, PyTorch ${torch[r].imagesPerSecond.toFixed(2)} img/s`);
      }
      const row = {
        model, mode,
        oursImagesPerSecond: median(ours.map((m) => m.imagesPerSecond)),
        pytorchImagesPerSecond: median(torch.map((m) => m.imagesPerSecond)),
        oursPeakRssMb: median(ours.map((m) => m.peakRssMb ?? 0)),
        pytorchPeakRssMb: median(torch.map((m) => m.peakRssMb ?? 0)),
        // The most any kept measurement was disturbed by other processes (share of the CPUs).
        maxOthersShare: Math.max(0, ...[...ours, ...torch].map((m) => m.othersShare ?? 0)),
        ratio: 0,
      };
      row.ratio = row.oursImagesPerSecond / row.pytorchImagesPerSecond;
      rows.push(row);
    }
  }
  const result = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores`,
    libtorch: runtimeInfo().libtorchVersion,
    settings: {
      size: opts.size, batch: opts.batch, warmup: opts.warmup, steps: opts.steps, repeats: opts.repeats, threads: opts.threads,
      precision: 'fp32', maxInterferencePercent: opts.maxInterference, retries: opts.retries,
    },
    rows,
  };
  console.log(JSON.stringify(result, null, 2));
  if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  if (opts.record) {
    const file = path.join(__dirname, 'RESULTS.md');
    let text = fs.readFileSync(file, 'utf8');
    if (!text.includes('## Models (`npm run bench`)')) {
      text += `\n## Models (\`npm run bench\`)\n\nfp32 on the CPU, a fixed random batch, each measurement in its own process. Training step: forward,
cross-entropy, backward, Adam. Inference: eval-mode forward (inference mode on both sides; ours folds BatchNorm
into the convolutions and runs channels-last). PyTorch: torchvision's Inception V3 (no aux head) and
test/oracle/xception.py, eager, in \`/usr/bin/python3\`. Measurements disturbed by other processes are repeated.\n
| date | model | step | size, batch | machine | ours img/s | PyTorch img/s | ratio | peak RSS ours / PyTorch (MB) |
|---|---|---|---|---|---|---|---|---|
`;
    }
    for (const r of rows) {
      text += `| ${result.date} | ${r.model} | ${r.mode === 'train' ? 'training' : 'inference (model.forward from JS)'} | ${opts.size}, ${opts.batch} | ${result.machine}, ${opts.threads} threads, libtorch ${result.libtorch} | ${r.oursImagesPerSecond.toFixed(2)} | ${r.pytorchImagesPerSecond.toFixed(2)} | ${r.ratio.toFixed(2)} | ${r.oursPeakRssMb.toFixed(0)} / ${r.pytorchPeakRssMb.toFixed(0)} |\n`;
    }
    fs.writeFileSync(file, text);
    console.error(`appended to ${file}`);
  }
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
