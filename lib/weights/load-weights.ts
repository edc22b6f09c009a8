// The one weight loader: reads a safetensors file or a PyTorch `torch.save` zip (told apart by
// content, not by extension), checks every name and shape against the model's state dict, and
// says which tensors it loaded and which it left at the model's own values (a classifier of another
// size, with resetHead). The model itself only receives the checked tensors.
import { ModelError } from '../errors';
import { isNativeDtype, NATIVE_DTYPES, NativeTensorInfo, NativeTensorInput } from '../native';
import type { Model } from '../models';
import { parseSafetensors, readFileBytes, SafetensorsTensor } from '../safetensors';
import { isZip, parsePth } from './pth';

export interface LoadWeightsOptions {
  /** Refuse a file that lacks some of the model's tensors or holds others. Default true. Shapes are always checked. */
  strict?: boolean;
  /**
   * When the classifier's shape differs (1000 ImageNet classes into a 10-class model), load
   * everything else and leave the classifier (`fc.*`, and Inception V3's `AuxLogits.fc.*`) at the
   * model's own values: its fresh initialisation for a new model. Default false: a differing
   * classifier is an error.
   */
  resetHead?: boolean;
}

export interface LoadWeightsResult {
  /** The model's tensors that now hold the file's values, in state-dict order. */
  loaded: string[];
  /** The classifier tensors left at the model's own values (resetHead), in state-dict order. */
  reset: string[];
  /** The file's tensors that were not loaded (strict: false), by their names in the file. */
  ignored: string[];
}

export type WeightsFormat = 'safetensors' | 'pytorch';

export interface WeightsFile {
  format: WeightsFormat;
  tensors: Map<string, SafetensorsTensor>;
}


// A safetensors file starts with its header's length, then the JSON header: '{' at byte 8.
function looksLikeSafetensors(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 9 && bytes[8] === 0x7b && !isZip(bytes);
}

/** Reads a weights file, safetensors or a PyTorch zip, whatever its extension. */
export async function readWeightsFile(file: string): Promise<WeightsFile> {
  const bytes = await readFileBytes(file);
  if (looksLikeSafetensors(bytes)) return { format: 'safetensors', tensors: parseSafetensors(bytes, file).tensors };
  return { format: 'pytorch', tensors: (await parsePth(bytes, file)).tensors };
}

function listNames(names: string[], limit = 8): string {
  const shown = names.slice(0, limit).join(', ');
  return names.length > limit ? `${shown}, … (${names.length - limit} more)` : shown;
}

const sameShape = (a: number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Old Xception files store 1x1 convolution weights 2-D, [out, in] for [out, in, 1, 1]. */
const isSqueezed1x1 = (file: number[], model: readonly number[]): boolean =>
  model.length === 4 && model[2] === 1 && model[3] === 1 && sameShape(file, model.slice(0, 2));

export interface MatchOptions extends LoadWeightsOptions {
  /** The file, as messages name it. */
  source: string;
  /** The model, as messages name it ('Xception'). */
  into: string;
  /** The model's classifier modules (model.classifierModules()), which resetHead leaves alone. */
  classifier: readonly string[];
}

/**
 * Checks a file's tensors against the model's state dict (`expected`) and returns what to copy
 * into it, or throws a ModelError that names every missing, unexpected and mismatched tensor.
 * DataParallel's 'module.' prefix is dropped; 2-D weights of 1x1 convolutions are reshaped.
 */
export function matchWeights(
  tensors: Map<string, SafetensorsTensor>,
  expected: readonly NativeTensorInfo[],
  opts: MatchOptions,
): { entries: NativeTensorInput[]; result: LoadWeightsResult } {
  const strict = opts.strict ?? true;
  const headModule = (name: string): string | undefined => opts.classifier.find((m) => name.startsWith(`${m}.`));
  const resetHead = opts.resetHead ?? false;
  const modelNames = new Set(expected.map((t) => t.name));
  const fileNames = [...tensors.keys()];
  const unwrap = fileNames.length > 0 && fileNames.every((n) => n.startsWith('module.')) && ![...modelNames].some((n) => n.startsWith('module.'));
  const fileName = (name: string): string => (unwrap ? `module.${name}` : name);

  const missing: string[] = [];
  const mismatched: string[] = [];
  const resetModules = new Set<string>();
  for (const want of expected) {
    const tensor = tensors.get(fileName(want.name));
    const head = headModule(want.name);
    if (!tensor) {
      if (resetHead && head) resetModules.add(head);
      else missing.push(want.name);
    } else if (!sameShape(tensor.shape, want.shape) && !isSqueezed1x1(tensor.shape, want.shape)) {
      if (resetHead && head) resetModules.add(head);
      else mismatched.push(`${want.name}: file [${tensor.shape.join(', ')}], model [${want.shape.join(', ')}]`);
    }
  }
  const unexpected = fileNames.filter((n) => !modelNames.has(unwrap ? n.slice('module.'.length) : n));

  const problems: string[] = [];
  if (strict && missing.length) problems.push(`${missing.length} missing key(s): ${listNames(missing)}`);
  if (strict && unexpected.length) problems.push(`${unexpected.length} unexpected key(s): ${listNames(unexpected)}`);
  if (mismatched.length) problems.push(`${mismatched.length} shape mismatch(es): ${listNames(mismatched, 4)}`);
  if (mismatched.some((m) => headModule(m))) {
    problems.push('the classifier differs: loadWeights(file, { resetHead: true }) loads the rest and leaves it at the model\'s initialisation');
  }
  if (problems.length) throw new ModelError(`cannot load ${opts.source} into ${opts.into}:\n  ${problems.join('\n  ')}`);

  const entries: NativeTensorInput[] = [];
  const result: LoadWeightsResult = { loaded: [], reset: [], ignored: unexpected };
  for (const want of expected) {
    const head = headModule(want.name);
    if (head && resetModules.has(head)) {
      result.reset.push(want.name);
      continue;
    }
    const tensor = tensors.get(fileName(want.name));
    if (!tensor) continue;  // missing, not strict
    if (!isNativeDtype(tensor.dtype)) {
      throw new ModelError(`cannot load ${opts.source}: '${fileName(want.name)}' has dtype ${tensor.dtype}; supported are ${[...NATIVE_DTYPES].join(', ')}`);
    }
    entries.push({ name: want.name, dtype: tensor.dtype, shape: [...want.shape], data: tensor.data });
    result.loaded.push(want.name);
  }
  return { entries, result };
}

/**
 * Loads a `.safetensors` file or a PyTorch `torch.save` state dict (`.pth`, `.pt`, `.bin`: the zip
 * format of PyTorch >= 1.6) into the model, checking every name and shape. Same as
 * `model.loadWeights(file, opts)`.
 */
export async function loadWeights(model: Model, file: string, opts: LoadWeightsOptions = {}): Promise<LoadWeightsResult> {
  return model.loadWeights(file, opts);
}
