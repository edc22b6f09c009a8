// Reading PyTorch's `torch.save` files natively, without Python: the zip format of PyTorch >= 1.6
// (`.pth`, `.pt`, `.bin`). The zip holds `<archive>/data.pkl`, a pickle whose tensors point through
// persistent ids to raw storages `<archive>/data/<key>`, plus `version` (and since 2.1 `byteorder`).
//
// This file assembles the state dict; its parts are pth-format.ts (zip or legacy), pth-zip.ts (the
// container), pickle.ts (the pickle machine, over the values of pickle-values.ts) and pth-limits.ts.
// Any Python object outside a state dict is refused by name; nothing in the file is ever executed.
// The file is untrusted: every size, count and offset is checked before it is used, and every
// failure is a PthError that says what is wrong.
import * as yauzl from 'yauzl';
import { DTYPE_SIZES, SafetensorsDtype, SafetensorsTensor } from '../safetensors';
import { PickleProblem, unpickle } from './pickle';
import { PyDict, PyValue, TensorRef, typeName } from './pickle-values';
import { conversionCommand, isLegacyPth, isZip } from './pth-format';
import { clip, PTH_LIMITS, quote } from './pth-limits';
import { listEntries, openZip, readEntry } from './pth-zip';

export { conversionCommand, isZip, PTH_LIMITS };

export class PthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PthError';
  }
}

// ---- choosing the state dict in what the pickle built -------------------------------------------

/** Entries that checkpoints (timm, torchvision's references, tutorials) keep the state dict under. */
const NESTED_STATE_DICT_KEYS = ['state_dict', 'model', 'model_state_dict'];

function selectStateDict(root: PyValue): Map<string, TensorRef> {
  if (!(root instanceof PyDict)) throw new PickleProblem(`it holds a ${typeName(root)}, not a state dict (a dict of names to tensors)`);
  let dict = root;
  let where = 'the state dict';
  for (const key of NESTED_STATE_DICT_KEYS) {
    const nested = root.entries.get(key);
    if (nested instanceof PyDict) {
      dict = nested;
      where = `the state dict under '${key}'`;
      break;
    }
  }
  const tensors = new Map<string, TensorRef>();
  for (const [key, value] of dict.entries) {
    if (typeof key !== 'string') throw new PickleProblem(`${where} has a key of type ${typeName(key as PyValue)}, not str`);
    if (!(value instanceof TensorRef)) {
      const keys = [...dict.entries.keys()].slice(0, 8).map((k) => quote(String(k))).join(', ');
      throw new PickleProblem(
        `${where} maps ${quote(key)} to a ${typeName(value)}, not a tensor (its keys: ${keys}${dict.entries.size > 8 ? ', …' : ''})`,
      );
    }
    tensors.set(key, value);
  }
  if (tensors.size === 0) throw new PickleProblem(`${where} holds no tensors`);
  return tensors;
}

// ---- tensors out of storages ---------------------------------------------------------------------

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d];
  }
  return true;
}

/** The tensor's elements in row-major order: a view when they already are, else a copy. */
function materialise(t: TensorRef, storage: Uint8Array): Uint8Array {
  const size = DTYPE_SIZES[t.storage.dtype];
  const numel = t.shape.reduce((n, d) => n * d, 1);
  if (numel === 0) return new Uint8Array(0);
  if (isContiguous(t.shape, t.stride)) return storage.subarray(t.offset * size, (t.offset + numel) * size);
  const out = new Uint8Array(numel * size);
  const dims = t.shape.length;
  const index = new Array<number>(dims).fill(0);
  let from = t.offset;
  for (let i = 0, to = 0; i < numel; i++, to += size) {
    for (let b = 0, s = from * size; b < size; b++) out[to + b] = storage[s + b];
    for (let d = dims - 1; d >= 0; d--) {
      from += t.stride[d];
      if (++index[d] < t.shape[d]) break;
      from -= t.stride[d] * t.shape[d];
      index[d] = 0;
    }
  }
  return out;
}

// ---- the file ---------------------------------------------------------------------------------------

export interface PthStateDict {
  /** The state dict's tensors, contiguous, by name, in the file's order. */
  tensors: Map<string, SafetensorsTensor>;
}

/**
 * Reads a `torch.save` state dict (zip format, PyTorch >= 1.6) held in memory. The state dict may be
 * the saved object itself or its 'state_dict', 'model' or 'model_state_dict' entry. Throws a
 * PthError for anything else, for a legacy (pre-1.6) file (with the command that converts it), and
 * for a damaged file.
 */
export async function parsePth(bytes: Uint8Array, source = 'the buffer'): Promise<PthStateDict> {
  const fail = (problem: string): never => {
    throw new PthError(`cannot read ${source} as a PyTorch state dict: ${problem}`);
  };
  if (!isZip(bytes)) {
    if (isLegacyPth(bytes)) {
      throw new PthError(
        `${source} is in PyTorch's legacy format (torch.save before PyTorch 1.6, or with ` +
          '_use_new_zipfile_serialization=False), which only Python reads. Convert it once to the zip format with:\n' +
          `  ${conversionCommand(source)}`,
      );
    }
    fail('it is neither a safetensors file nor a zip written by torch.save (PyTorch >= 1.6)');
  }
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let zip: yauzl.ZipFile | undefined;
  try {
    zip = await openZip(buffer);
    const entries = await listEntries(zip);
    const pickles = [...entries.keys()].filter((name) => /^[^/]+\/data\.pkl$/.test(name));
    if (pickles.length !== 1) {
      fail(`the zip holds ${pickles.length} '<archive>/data.pkl' records, not one (${entries.size} entries)`);
    }
    const prefix = pickles[0].slice(0, -'data.pkl'.length);
    if (entries.has(`${prefix}constants.pkl`) || [...entries.keys()].some((name) => name.startsWith(`${prefix}code/`))) {
      fail('it is a TorchScript archive (torch.jit.save), not a state dict: save model.state_dict() with torch.save');
    }
    const byteorder = entries.get(`${prefix}byteorder`);
    if (byteorder) {
      const order = (await readEntry(zip, byteorder)).toString('latin1').trim();
      if (order !== 'little') fail(`its byte order is ${quote(order)}; only little-endian files are read`);
    }
    const pickleEntry = entries.get(pickles[0]) as yauzl.Entry;
    if (pickleEntry.uncompressedSize > PTH_LIMITS.pickleBytes) {
      fail(`its data.pkl is ${pickleEntry.uncompressedSize} bytes (at most ${PTH_LIMITS.pickleBytes})`);
    }
    let refs: Map<string, TensorRef>;
    try {
      refs = selectStateDict(unpickle(await readEntry(zip, pickleEntry)));
    } catch (error) {
      if (error instanceof PickleProblem) fail(error.message);
      throw error;
    }
    const storages = new Map<string, Buffer>();
    const tensors = new Map<string, SafetensorsTensor>();
    for (const [name, ref] of refs) {
      const { key, dtype, numel } = ref.storage;
      let storage = storages.get(key);
      if (!storage) {
        const entry = entries.get(`${prefix}data/${key}`);
        if (!entry) return fail(`the storage of ${quote(name)} (${quote(`${prefix}data/${key}`)}) is missing from the zip`);
        storage = await readEntry(zip, entry);
        if (storage.length !== numel * DTYPE_SIZES[dtype]) {
          fail(`storage ${quote(key)} holds ${storage.length} bytes; ${numel} elements of ${dtype} need ${numel * DTYPE_SIZES[dtype]}`);
        }
        storages.set(key, storage);
      }
      tensors.set(name, { dtype, shape: ref.shape, data: materialise(ref, storage) });
    }
    return { tensors };
  } catch (error) {
    if (error instanceof PthError) throw error;
    // The zip reader's and readEntry's findings: a damaged or cut file.
    return fail(`the zip is damaged or truncated: ${clip((error as Error).message ?? String(error), 300)}`);
  } finally {
    zip?.close();
  }
}

/** @internal Runs the pickle machine over bytes alone (for tests): the names and shapes it finds, or a PthError. */
export function inspectPickle(bytes: Uint8Array): Array<{ name: string; dtype: SafetensorsDtype; shape: number[] }> {
  try {
    return [...selectStateDict(unpickle(bytes))].map(([name, t]) => ({ name, dtype: t.storage.dtype, shape: t.shape }));
  } catch (error) {
    if (error instanceof PickleProblem) throw new PthError(`cannot read the pickle: ${error.message}`);
    throw error;
  }
}
