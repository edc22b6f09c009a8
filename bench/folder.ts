// Image-folder benchmark: images/s of a training epoch's data path over a folder of real-sized
// JPEGs (generated: 500x375, 10 classes), side by side in one run:
//   ours:    what Trainer.fit() runs for --dataset folder (lib/datasets/folder-feeder.ts: decoding,
//            RandomResizedCrop and flip on libuv's pool, pushing into a NativeBatchFeed), with the
//            native side popping and normalising each batch as train_epoch does (on one libtorch
//            thread, as each DataLoader worker runs with one); only the model step is left out
//   PyTorch: ImageFolder + DataLoader(num_workers = cores) with the same transforms
//            (bench/folder_reference.py in /usr/bin/python3), iterated for one epoch
// Each side runs in turn, `--repeats` times; medians are reported, and a row goes to RESULTS.md.
//
//   npm run bench:folder -- [--images 2000] [--size 299] [--batch-size 32] [--repeats 3] [--dir D]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import sharp from 'sharp';
import { createRng } from '../lib/random';
import { median } from './stats';

const PYTHON = process.env.XCEPTION_TORCH_PYTHON ?? '/usr/bin/python3';
const [WIDTH, HEIGHT, CLASSES] = [500, 375, 10];

/** A photo-like JPEG: smooth shapes, texture and noise, different per image. */
async function writePhoto(file: string, seed: number): Promise<void> {
  const rng = createRng(seed);
  const [fx, fy, phase] = [3 + rng() * 20, 3 + rng() * 20, rng() * 6];
  const data = Buffer.alloc(WIDTH * HEIGHT * 3);
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      const i = (y * WIDTH + x) * 3;
      data[i] = 128 + 100 * Math.sin(x / fx + phase) + rng() * 24;
      data[i + 1] = 128 + 100 * Math.cos(y / fy - phase) + rng() * 24;
      data[i + 2] = 128 + 90 * Math.sin((x + y) / (fx + fy)) + rng() * 24;
    }
  }
  await sharp(data, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
}

async function ensureFolder(dir: string, images: number): Promise<void> {
  const marker = path.join(dir, `.complete-${images}`);
  if (fs.existsSync(marker)) return;
  fs.rmSync(dir, { recursive: true, force: true });
  console.error(`generating ${images} JPEGs of ${WIDTH}x${HEIGHT} in ${dir} ...`);
  for (let i = 0; i < images; i++) {
    const folder = path.join(dir, `class${i % CLASSES}`);
    fs.mkdirSync(folder, { recursive: true });
    await writePhoto(path.join(folder, `${String(i).padStart(6, '0')}.jpg`), i);
  }
  fs.writeFileSync(marker, '');
}

/** One training epoch's data path (bench/folder-epoch.ts), in a process of its own as PyTorch's side is. */
function ours(dir: string, size: number, batch: number, epoch: number): { images: number; seconds: number; jpegDecoder: string } {
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'folder-epoch.ts'),
    '--dir', dir, '--size', String(size), '--batch', String(batch), '--epoch', String(epoch)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`our side failed:\n${r.stderr}`);
  return JSON.parse(r.stdout) as { images: number; seconds: number; jpegDecoder: string };
}

function reference(dir: string, size: number, batch: number, workers: number): { images: number; seconds: number } {
  const r = spawnSync(PYTHON, [path.join(__dirname, 'folder_reference.py'), '--dir', dir, '--size', String(size), '--batch', String(batch), '--workers', String(workers)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the PyTorch side failed (${PYTHON}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as { images: number; seconds: number };
}

async function main(): Promise<void> {
  const opts = new Command('bench:folder')
    .option('--images <n>', 'JPEGs in the generated folder', (v) => parseInt(v, 10), 2000)
    .option('--size <n>', 'crop size (the model input)', (v) => parseInt(v, 10), 299)
    .option('--batch-size <n>', 'images per batch', (v) => parseInt(v, 10), 32)
    .option('--repeats <n>', 'epochs of each side; medians are reported', (v) => parseInt(v, 10), 3)
    .option('--dir <dir>', 'where the folder is generated (kept for later runs)', path.join(os.tmpdir(), 'xception-torch-bench-folder'))
    .option('--no-record', 'do not append a row to bench/RESULTS.md')
    .parse(process.argv)
    .opts();
  await ensureFolder(opts.dir, opts.images);
  const cores = os.availableParallelism();
  const oursRuns: number[] = [];
  let jpegDecoder = '';
  const refRuns: number[] = [];
  for (let r = 0; r < opts.repeats; r++) {
    const a = ours(opts.dir, opts.size, opts.batchSize, r);
    jpegDecoder = a.jpegDecoder;
    const b = reference(opts.dir, opts.size, opts.batchSize, cores);
    oursRuns.push(a.images / a.seconds);
    refRuns.push(b.images / b.seconds);
    console.error(`epoch ${r + 1}: ours ${oursRuns[r].toFixed(1)} images/s (${a.seconds.toFixed(1)} s), PyTorch ${refRuns[r].toFixed(1)} images/s (${b.seconds.toFixed(1)} s)`);
  }
  const result = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${os.cpus()[0]?.model ?? 'unknown CPU'}, ${cores} cores`,
    jpegDecoder,
    images: opts.images, size: opts.size, batchSize: opts.batchSize, workers: cores,
    oursImagesPerSecond: median(oursRuns),
    pytorchImagesPerSecond: median(refRuns),
    ratio: median(oursRuns) / median(refRuns),
    runs: { ours: oursRuns, pytorch: refRuns },
  };
  console.log(JSON.stringify(result, null, 2));
  if (opts.record) {
    const file = path.join(__dirname, 'RESULTS.md');
    const row = `| ${result.date} | image folder, training data path: ${opts.images} JPEGs ${WIDTH}x${HEIGHT} -> RandomResizedCrop ${opts.size} + flip, batch ${opts.batchSize} | ${result.machine}; JPEG decoder ${result.jpegDecoder}; PyTorch DataLoader(num_workers=${cores}) | ${result.oursImagesPerSecond.toFixed(0)} | ${result.pytorchImagesPerSecond.toFixed(0)} | ${result.ratio.toFixed(2)} |\n`;
    appendFolderRow(file, row);
    console.error(`recorded in ${file}`);
  }
}

/** Adds a row at the end of RESULTS.md's image-folder table (the section is made the first time). */
function appendFolderRow(file: string, row: string): void {
  const heading = '## Image folders (npm run bench:folder)';
  const lines = fs.readFileSync(file, 'utf8').replace(/\n+$/, '').split('\n');
  let at = lines.indexOf(heading);
  if (at < 0) {
    lines.push('', heading, '', "Images/s of a training epoch's data path (decode, RandomResizedCrop, flip, normalise; no model step), ours against torchvision's ImageFolder + DataLoader on the same folder, each side in turn, medians of the epochs.", '', '| date | what | machine | ours img/s | PyTorch img/s | ours / PyTorch |', '|---|---|---|---|---|---|');
    at = lines.length - 1;
  } else {
    // The table's last row: the last line starting with '|' before the next heading.
    for (let i = at + 1; i < lines.length && !lines[i].startsWith('## '); i++) if (lines[i].startsWith('|')) at = i;
  }
  lines.splice(at + 1, 0, row.trimEnd());
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
