// The Python values a state dict's pickle builds (see pickle.ts): tuples, dicts, the allowed globals,
// and the storages and tensors that the persistent ids and _rebuild_tensor_v2 describe.
import { SafetensorsDtype } from '../safetensors';

export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}

export class PyDict {
  readonly entries = new Map<unknown, PyValue>();
  constructor(readonly ordered: boolean) {}
}

/** A class or function named by the pickle; only the allowed ones ever become one. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A persistent id: the storage `<archive>/data/<key>` of `numel` elements. */
export class StorageRef {
  constructor(readonly key: string, readonly dtype: SafetensorsDtype, readonly numel: number) {}
}

/** A tensor as _rebuild_tensor_v2 describes it: a strided view of a storage. */
export class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly stride: number[]) {}
}

export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyValue[] | PyTuple | PyDict | PyGlobal | StorageRef | TensorRef;

export function typeName(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyDict) return v.ordered ? 'OrderedDict' : 'dict';
  if (v instanceof PyGlobal) return v.qualifiedName;
  if (v instanceof StorageRef) return 'storage';
  return 'tensor';
}
