// Our side of bench/folder.ts, in a process of its own: one training epoch's data path as
// Trainer.fit() runs it for --dataset folder (lib/datasets/folder-feeder.ts decoding and cropping on
// libuv's pool into a NativeBatchFeed), the native side popping and normalising each batch as
// train_epoch does, on one libtorch thread (as each DataLoader worker runs with one); only the
// model step is left out. Prints {"images", "seconds", "jpegDecoder"}.
import { Command } from 'commander';
import { FolderFeeder } from '../lib/datasets/folder-feeder';
import { IMAGE_FOLDER_DEFAULTS, loadImageFolder } from '../lib/datasets/image-folder';
import { permutation } from '../lib/random';
import { runtimeInfo, setNumThreads } from '../lib/runtime';

async function main(): Promise<void> {
  const o = new Command()
    .requiredOption('--dir <dir>')
    .option('--size <n>', '', (v) => parseInt(v, 10), 299)
    .option('--batch <n>', '', (v) => parseInt(v, 10), 32)
    .option('--epoch <n>', '', (v) => parseInt(v, 10), 0)
    .parse(process.argv)
    .opts();
  setNumThreads(1);
  // The whole folder is the training split here, as ImageFolder sees it on PyTorch's side.
  const folder = await loadImageFolder(o.dir, { valSize: 1 });
  const files = [...folder.train.files, ...folder.val.files];
  const split = { root: folder.train.root, files, labels: Int32Array.from([...folder.train.labels, ...folder.val.labels]) };
  const f = IMAGE_FOLDER_DEFAULTS;
  const transform = { size: o.size, cropPct: f.cropPct, interpolation: f.interpolation, flip: true, scale: f.scale, ratio: f.ratio };
  const feeder = new FolderFeeder(split, { transform, prefetch: f.prefetch });
  const order = Int32Array.from(permutation(files.length, o.epoch));
  const batches = Math.floor(order.length / o.batch);
  const start = process.hrtime.bigint();
  const drained = await feeder.run(
    { kind: 'train', epoch: o.epoch, firstBatch: 0, batches, order, rankBatch: o.batch, rank: 0, worldSize: 1, seed: 0 },
    () => feeder.feed.drain(o.epoch, batches, { crop: o.size }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  feeder.dispose();
  console.log(JSON.stringify({ images: drained.images, seconds, jpegDecoder: runtimeInfo().jpegDecoder }));
}

main().catch((error: Error) => {
  console.error(error.stack ?? error.message);
  process.exit(1);
});
