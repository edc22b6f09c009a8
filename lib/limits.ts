// The ranges the package accepts, stated once: the CLI checks them before any work starts (exit
// code 2) and the Trainer and models check them for code that calls the API directly. Beyond
// them a run would fail later (an allocation of many gigabytes, thousands of threads, BatchNorm
// with one image) after minutes of loading.
import * as os from 'os';

export const LIMITS = Object.freeze({
  /** Largest crop, resize and summary input (an activation of Xception at 2048 is ~0.5 GB per image). */
  imageSize: 2048,
  /** Most classifier outputs (ImageNet-21k has 21,841 classes). */
  numClasses: 100_000,
  /** Most Xception middle-flow blocks (the paper uses 8). */
  middleFlowBlocks: 64,
  /** Fewest images in a training batch: BatchNorm needs two to compute batch statistics. */
  minTrainBatch: 2,
  /** Most images in each split of the synthetic dataset. */
  syntheticImages: 200_000,
  /** CIFAR-10's training images, of which --val-size are held out (at least 2 must remain). */
  cifar10TrainImages: 50_000,
});

/** Most CPU threads: four per core (libtorch's pool and OpenMP start one thread each). */
export function maxThreads(): number {
  return Math.max(8, 4 * os.cpus().length);
}
