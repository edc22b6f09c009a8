// The data a Trainer trains and evaluates on: the dataset its options name (CIFAR-10, synthetic,
// or splits passed in), cut to the options' limits, each split checked to hold enough images.
import { createSyntheticDataset, loadCifar10, selectImages } from './datasets';
import type { DatasetSplits, ImageSet } from './datasets';
import { LIMITS } from './limits';
import type { ResolvedTrainerOptions, TrainerOptions } from './trainer-options';

/** The train, val and test splits of `options`, limited by trainLimit/evalLimit; an Error for a split too small to use. */
export async function loadTrainingSplits(options: TrainerOptions, settings: ResolvedTrainerOptions): Promise<DatasetSplits> {
  const o = options;
  const s = settings;
  let splits: DatasetSplits;
  if (typeof o.dataset === 'object') splits = o.dataset;
  else if (o.dataset === 'synthetic') splits = createSyntheticDataset({ seed: s.seed, ...o.synthetic });
  else splits = await loadCifar10({ dataDir: o.dataDir, valSize: s.valSize, seed: s.seed });
  const limit = (set: ImageSet, n: number | null) =>
    n === null || n >= set.count ? set : selectImages(set, Array.from({ length: n }, (_, i) => i));
  const limited = {
    ...splits,
    train: limit(splits.train, s.trainLimit),
    val: limit(splits.val, s.evalLimit),
    test: limit(splits.test, s.evalLimit),
  };
  // An empty split would give an accuracy computed from nothing (a problem of the data: an Error).
  const minimum = { train: LIMITS.minTrainBatch, val: 1, test: 1 };
  for (const split of ['train', 'val', 'test'] as const) {
    const count = limited[split].count;
    if (count < minimum[split]) {
      throw new Error(
        `the ${split} split of ${splits.name} has ${count} image${count === 1 ? '' : 's'}; it needs at least ${minimum[split]}` +
          (s.dataset === 'cifar10' ? ' (is a CIFAR-10 batch file empty or truncated?)' : ''),
      );
    }
  }
  return limited;
}
