// xception-torch: the public API.
export { Xception, InceptionV3, createModel, ModelError, MODEL_NAMES } from './models';
export type {
  Model, ModelName, Device, TensorData, LayerSummary, XceptionOptions, InceptionV3Options, ModelOptionsByName,
} from './models';
export { readSafetensors, writeSafetensors, parseSafetensors, serializeSafetensors, float32Values, SafetensorsError } from './safetensors';
export type { SafetensorsTensor, SafetensorsFile, SafetensorsDtype } from './safetensors';
export { runtimeInfo, setNumThreads } from './runtime';
export type { RuntimeInfo } from './runtime';
