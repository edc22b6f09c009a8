// xception-torch: the public API.
export { Xception, InceptionV3, createModel, ModelError, MODEL_NAMES } from './models';
export type {
  Model, ModelName, Device, TensorData, LayerSummary, ModelSummary, BatchNormFolding, XceptionOptions, InceptionV3Options, ModelOptionsByName,
} from './models';
export { readSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors, float32Values, SafetensorsError } from './safetensors';
export type { SafetensorsTensor, SafetensorsFile, SafetensorsDtype } from './safetensors';
export { loadWeights, readWeightsFile } from './weights/load-weights';
export type { LoadWeightsOptions, LoadWeightsResult, WeightsFile, WeightsFormat } from './weights/load-weights';
export { parsePth, PthError } from './weights/pth';
export type { PthStateDict } from './weights/pth';
export { runtimeInfo, setInferenceConvolutions, setInferencePasses, setNumThreads, setTrainingConvolutions } from './runtime';
export type { RuntimeInfo } from './runtime';
export {
  CIFAR10_URL, CIFAR10_MD5, CIFAR10_ARCHIVE, CIFAR10_FOLDER, CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE,
  CIFAR10_CLASSES, CIFAR10_IMAGE_BYTES, CIFAR10_RECORD_BYTES,
  parseCifar10Batch, parseCifar10Meta, readCifar10Folder, resolveCifar10Dir, ensureCifar10, loadCifar10,
  splitTrainVal, selectImages, concatImageSets,
  SYNTHETIC_CLASS_NAMES, generateSyntheticImages, createSyntheticDataset, writeCifar10Binary, writeCifar10Archive,
} from './datasets';
export type {
  ImageSet, DatasetSplits, EnsureCifar10Options, LoadCifar10Options, SyntheticDatasetOptions, Cifar10Data, WriteCifar10Options,
} from './datasets';
export { createRng, permutation } from './random';
export { defaultCacheDir } from './cache-dir';
export { DeviceDataset, REFERENCE_PREPROCESSING } from './datasets';
export type { Preprocessing, Batch, Augmentation } from './datasets';
export { Trainer, resolveTrainerOptions, TRAINER_DEFAULTS } from './trainer';
export type {
  TrainerOptions, ResolvedTrainerOptions, OptimizerOptions, AmpOption, EpochRecord, History, EvalResult, BatchEvent, InitWeightsEvent,
} from './trainer';
export { GradScaler } from './grad-scaler';
export type { GradScalerOptions, GradScalerState } from './grad-scaler';
export { TensorBoardWriter, type TensorBoardWriterOptions } from './report/tensorboard';
export { ImageDecodeError } from './errors';
export { decodeImage, decodeImageBytes, IMAGE_EXTENSIONS, type RgbImage } from './images/decode';
export { resize, type Interpolation } from './images/resample';
export { applyEvalTransform, evalBatch, resizeSize, DEFAULT_CROP_PCT, type EvalTransform } from './images/eval-transform';
export { PRESETS, PRESET_NAMES, DEFAULT_PRESET, IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, type Preset, type PresetName } from './images/presets';
export { findImages } from './images/find-images';
export { predictImages, softmax, topK, type PredictOptions, type ImagePrediction, type ClassScore } from './predict';
export { IMAGENET_CLASSES } from './data/imagenet-classes';
