// The datasets: CIFAR-10 (download, verify, extract, parse, split) and the synthetic stand-in.
export type { ImageSet, DatasetSplits } from './types';
export {
  CIFAR10_URL, CIFAR10_MD5, CIFAR10_ARCHIVE, CIFAR10_FOLDER, CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE,
  CIFAR10_CLASSES, CIFAR10_IMAGE_BYTES, CIFAR10_RECORD_BYTES,
  parseCifar10Batch, parseCifar10Meta, readCifar10Folder, resolveCifar10Dir, ensureCifar10, loadCifar10,
  splitTrainVal, selectImages, concatImageSets,
} from './cifar10';
export type { EnsureCifar10Options, LoadCifar10Options } from './cifar10';
export {
  SYNTHETIC_CLASS_NAMES, generateSyntheticImages, createSyntheticDataset, writeCifar10Binary, writeCifar10Archive,
} from './synthetic';
export type { SyntheticDatasetOptions, Cifar10Data, WriteCifar10Options } from './synthetic';
export { DeviceDataset, REFERENCE_PREPROCESSING, resolvePreprocessing } from './device-dataset';
export type { Preprocessing, Batch, Augmentation } from './device-dataset';
