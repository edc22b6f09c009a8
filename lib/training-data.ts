// The data a Trainer trains and evaluates on: the dataset its options name (CIFAR-10, synthetic,
// splits passed in, or an image folder), cut to the options' limits, each split checked to hold
// enough images; and each split as the native session takes it (TrainingSplit).
import { createSyntheticDataset, loadCifar10, selectImages } from './datasets';
import type { DatasetSplits, ImageSet } from './datasets';
import { DeviceDataset } from './datasets/device-dataset';
import { FeedPhase, FolderFeeder } from './datasets/folder-feeder';
import { ImageFolderDataset, ImageFolderSplit, loadImageFolder } from './datasets/image-folder';
import type { ImageDecodeError } from './errors';
import * as os from 'os';
import { resizeSize } from './images/eval-transform';
import { LIMITS } from './limits';
import type { Device } from './models';
import type { NativeBatchFeedHandle, NativeDatasetHandle, NativeTrainerHandle } from './native';
import type { ResolvedTrainerOptions, TrainerOptions } from './trainer-options';

type SplitName = 'train' | 'val' | 'test';

/** One split as the native session reads it: images in device memory, or an image folder streamed. */
export interface TrainingSplit {
  readonly handle: NativeDatasetHandle | NativeBatchFeedHandle;
  /** Runs `work` (the session's epoch or evaluation on `handle`), feeding it `phase` when streamed. */
  run<T>(phase: () => Promise<FeedPhase> | FeedPhase, work: () => Promise<T>): Promise<T>;
  dispose(): void;
}

export interface TrainingData {
  name: string;
  classNames: string[];
  /** An image folder without test/ tests on its validation split: the same object. */
  splits: Record<SplitName, TrainingSplit>;
}

const minimum = { train: LIMITS.minTrainBatch, val: 1, test: 1 };

function checkCount(split: SplitName, count: number, name: string, hint = ''): void {
  // An empty split would give an accuracy computed from nothing (a problem of the data: an Error).
  if (count < minimum[split]) {
    throw new Error(`the ${split} split of ${name} has ${count} image${count === 1 ? '' : 's'}; it needs at least ${minimum[split]}${hint}`);
  }
}

/** The train, val and test splits of `options`, limited by trainLimit/evalLimit; an Error for a split too small to use. */
export async function loadTrainingSplits(options: TrainerOptions, settings: ResolvedTrainerOptions): Promise<DatasetSplits> {
  const o = options;
  const s = settings;
  let splits: DatasetSplits;
  if (typeof o.dataset === 'object') splits = o.dataset;
  else if (o.dataset === 'synthetic') splits = createSyntheticDataset({ seed: s.seed, ...o.synthetic });
  else splits = await loadCifar10({ dataDir: o.dataDir, valSize: s.valSize ?? undefined, seed: s.seed });
  const limit = (set: ImageSet, n: number | null) =>
    n === null || n >= set.count ? set : selectImages(set, Array.from({ length: n }, (_, i) => i));
  const limited = {
    ...splits,
    train: limit(splits.train, s.trainLimit),
    val: limit(splits.val, s.evalLimit),
    test: limit(splits.test, s.evalLimit),
  };
  for (const split of ['train', 'val', 'test'] as const) {
    checkCount(split, limited[split].count, splits.name, s.dataset === 'cifar10' ? ' (is a CIFAR-10 batch file empty or truncated?)' : '');
  }
  return limited;
}

/** An image folder's layout (no pixels), limited by trainLimit/evalLimit. */
export async function loadFolderSplits(settings: ResolvedTrainerOptions): Promise<ImageFolderDataset> {
  const s = settings;
  const folder = await loadImageFolder(s.dataDir!, { valSize: s.valSize ?? undefined, seed: s.seed });
  const limit = (split: ImageFolderSplit, n: number | null): ImageFolderSplit =>
    n === null || n >= split.files.length ? split : { ...split, files: split.files.slice(0, n), labels: split.labels.slice(0, n) };
  const limited = { ...folder, train: limit(folder.train, s.trainLimit), val: limit(folder.val, s.evalLimit), test: limit(folder.test, s.evalLimit) };
  for (const split of ['train', 'val', 'test'] as const) checkCount(split, limited[split].files.length, folder.name);
  return limited;
}

/**
 * --cache-images: throws when the cached copies of every split (shorter side `resize`, taken as 4:3)
 * would need more than half of `freeBytes`, naming both; streaming needs no such room.
 */
export function checkCacheFits(folder: ImageFolderDataset, resize: number, freeBytes: number): void {
  const splits = new Set([folder.train, folder.val, folder.test]);
  const images = [...splits].reduce((n, split) => n + split.files.length, 0);
  const bytes = images * resize * Math.ceil((resize * 4) / 3) * 3;
  if (bytes > freeBytes / 2) {
    const gib = (b: number) => (b < 2 ** 30 ? `${Math.round(b / 2 ** 20)} MiB` : `${(b / 2 ** 30).toFixed(1)} GiB`);
    throw new Error(
      `--cache-images: the ${images} images would need about ${gib(bytes)} in memory, more than half of the ${gib(freeBytes)} free; ` +
        'leave out --cache-images to stream them from disk',
    );
  }
}

function inMemory(dataset: DeviceDataset): TrainingSplit {
  return { handle: dataset.nativeHandle, run: (_phase, work) => work(), dispose: () => dataset.dispose() };
}

function streamed(feeder: FolderFeeder): TrainingSplit {
  return {
    handle: feeder.feed,
    run: async (phase, work) => feeder.run(await phase(), work),
    dispose: () => feeder.dispose(),
  };
}

/**
 * The dataset of `options` as the session's splits: in-memory images copied to `device` once, or
 * an image folder whose files are decoded batch by batch (bad files to `onBadImage` when skipped).
 */
export async function loadTrainingData(
  options: TrainerOptions, settings: ResolvedTrainerOptions, device: Device, onBadImage: (error: ImageDecodeError) => void,
): Promise<TrainingData> {
  const s = settings;
  if (s.imageFolder) {
    const folder = await loadFolderSplits(s);
    const f = s.imageFolder;
    const transform = {
      size: s.preprocessing.crop, cropPct: f.cropPct, resize: f.resize ?? undefined, interpolation: f.interpolation, flip: s.preprocessing.flip, scale: f.scale, ratio: f.ratio,
    };
    if (f.cacheImages) checkCacheFits(folder, resizeSize(transform), os.freemem());
    const feeder = (split: ImageFolderSplit) => streamed(new FolderFeeder(split, {
      transform, prefetch: f.prefetch, skipBadImages: f.skipBadImages, cacheImages: f.cacheImages, onBadImage,
    }));
    const val = feeder(folder.val);
    return {
      name: folder.name,
      classNames: folder.classNames,
      splits: { train: feeder(folder.train), val, test: folder.testIsVal ? val : feeder(folder.test) },
    };
  }
  const splits = await loadTrainingSplits(options, settings);
  const held = (split: SplitName) => inMemory(DeviceDataset.fromImageSet(splits[split], device));
  return { name: splits.name, classNames: splits.classNames, splits: { train: held('train'), val: held('val'), test: held('test') } };
}

/** What a streamed training split feeds this rank for `epoch` from batch `firstBatch` on. */
export function trainFeedPhase(session: NativeTrainerHandle, s: ResolvedTrainerOptions, rank: number, epoch: number, firstBatch: number): FeedPhase {
  const worldSize = s.distributed?.worldSize ?? 1;
  return {
    kind: 'train', epoch, firstBatch, batches: session.batchesPerEpoch(), order: session.epochIndices(epoch),
    rankBatch: s.batchSize / worldSize, rank, worldSize, seed: s.seed,
  };
}

/** Frees every split once (an image folder without test/ tests on its validation split). */
export function disposeData(data: TrainingData): void {
  for (const split of new Set(Object.values(data.splits))) split.dispose();
}
