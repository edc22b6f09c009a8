// Data-pipeline benchmark: images/s to produce normalised, augmented training batches (the
// reference setup: 32 -> 320, random crop 299, flip; batch 128) natively, side by side in the same
// run with the reference notebook's pipeline (PIL transforms in a DataLoader with 2 workers,
// bench/data_pipeline_reference.py in /usr/bin/python3). Both sides get the same CPU threads.
//
//   npm run bench:data -- [--batches 8] [--threads N] [--repeats 3] [--out FILE] [--no-record]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { DeviceDataset, REFERENCE_PREPROCESSING } from '../lib/datasets/device-dataset';
import { setNumThreads, runtimeInfo } from '../lib/runtime';
import { permutation } from '../lib/random';
import { median } from './stats';

const PYTHON = process.env.XCEPTION_TORCH_PYTHON ?? '/usr/bin/python3';

async function ours(images: number, batch: number, batches: number): Promise<number> {
  const data = new Uint8Array(images * 3 * 32 * 32);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  const labels = Uint8Array.from({ length: images }, (_, i) => i % 10);
  const dataset = DeviceDataset.fromImageSet({ images: data, labels, count: images, channels: 3, height: 32, width: 32 }, 'cpu');
  const order = permutation(images, 0);
  const indices = (k: number) => order.subarray((k * batch) % (images - batch), ((k * batch) % (images - batch)) + batch);
  await dataset.trainBatch(indices(0), REFERENCE_PREPROCESSING, { seed: 0 });  // warm-up
  const start = process.hrtime.bigint();
  for (let k = 1; k <= batches; k++) await dataset.trainBatch(indices(k), REFERENCE_PREPROCESSING, { seed: k });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return (batches * batch) / seconds;
}

function reference(images: number, batch: number, batches: number, threads: number): number {
  const r = spawnSync(PYTHON, [
    path.join(__dirname, 'data_pipeline_reference.py'), '--images', String(images), '--batch', String(batch),
    '--batches', String(batches), '--workers', '2', '--threads', String(threads),
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the reference pipeline failed (${PYTHON}):\n${r.stderr}`);
  return (JSON.parse(r.stdout) as { imagesPerSecond: number }).imagesPerSecond;
}

async function main(): Promise<void> {
  const opts = new Command('bench:data')
    .option('--batches <n>', 'timed batches per run', (v) => parseInt(v, 10), 8)
    .option('--batch-size <n>', 'images per batch', (v) => parseInt(v, 10), 128)
    .option('--threads <n>', 'CPU threads for both sides', (v) => parseInt(v, 10), os.cpus().length)
    .option('--repeats <n>', 'runs of each side; medians are reported', (v) => parseInt(v, 10), 3)
    .option('--out <file>', 'write the results as JSON')
    .option('--no-record', 'do not append a row to bench/RESULTS.md')
    .parse(process.argv)
    .opts();
  setNumThreads(opts.threads);
  const images = opts.batchSize * (opts.batches + 2) * 2;
  const oursRuns: number[] = [];
  const refRuns: number[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    oursRuns.push(await ours(images, opts.batchSize, opts.batches));
    refRuns.push(reference(images, opts.batchSize, opts.batches, opts.threads));
    console.error(`run ${r + 1}: native ${oursRuns[r].toFixed(1)} images/s, reference ${refRuns[r].toFixed(1)} images/s`);
  }
  const info = runtimeInfo();
  const result = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores`,
    libtorch: info.libtorchVersion,
    threads: opts.threads,
    batchSize: opts.batchSize,
    nativeImagesPerSecond: median(oursRuns),
    referenceImagesPerSecond: median(refRuns),
    ratio: median(oursRuns) / median(refRuns),
    runs: { native: oursRuns, reference: refRuns },
  };
  console.log(JSON.stringify(result, null, 2));
  if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  if (opts.record) {
    const file = path.join(__dirname, 'RESULTS.md');
    const row = `| ${result.date} | data pipeline, train batches 299 (32→320, crop, flip), batch ${result.batchSize} | ${result.machine}, ${result.threads} threads, libtorch ${result.libtorch} | ${result.nativeImagesPerSecond.toFixed(0)} | ${result.referenceImagesPerSecond.toFixed(0)} | ${result.ratio.toFixed(2)} |\n`;
    fs.appendFileSync(file, row);
    console.error(`appended to ${file}`);
  }
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
