// The pickle machine of the PyTorch reader (see pth.ts): it runs data.pkl, and knows only what a state
// dict needs: dicts (plain and collections.OrderedDict), lists, tuples, numbers, strings, and tensors
// rebuilt by torch._utils._rebuild_tensor_v2 from storages of a fixed list of types. Any other Python
// object is refused by name; nothing in the file is ever executed. The machine is iterative (no
// recursion) and every size and count it reads is checked against PTH_LIMITS.
import { DTYPE_SIZES, SafetensorsDtype } from '../safetensors';
import { PyDict, PyGlobal, PyTuple, PyValue, StorageRef, TensorRef, typeName } from './pickle-values';
import { clip, PTH_LIMITS, quote } from './pth-limits';

// The storage types a state dict's tensors use (torch.save names them by their legacy class).
const STORAGE_DTYPES: Readonly<Record<string, SafetensorsDtype>> = {
  FloatStorage: 'F32', DoubleStorage: 'F64', HalfStorage: 'F16', BFloat16Storage: 'BF16', LongStorage: 'I64',
  IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8', BoolStorage: 'BOOL',
};
const ORDERED_DICT = 'collections.OrderedDict';
const REBUILD_TENSOR = 'torch._utils._rebuild_tensor_v2';
const REBUILD_PARAMETER = 'torch._utils._rebuild_parameter';
// Protocol 2 has no bytes opcode: Python 3 pickles bytes as _codecs.encode(text, 'latin1').
const ENCODE = '_codecs.encode';
const CALLABLES: ReadonlySet<string> = new Set([ORDERED_DICT, REBUILD_TENSOR, REBUILD_PARAMETER, ENCODE]);

function isAllowedGlobal(module: string, name: string): boolean {
  return CALLABLES.has(`${module}.${name}`) || (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name));
}

/** Thrown inside the machine; parsePth turns it into a PthError naming the file. */
export class PickleProblem extends Error {}

/**
 * Runs a pickle (protocols 2 to 5, the binary opcodes) that builds a state dict, and returns the
 * value it builds. Refuses any Python object outside the allow-list, and any opcode a state dict
 * does not use, with a PickleProblem.
 */
export function unpickle(bytes: Uint8Array): PyValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let pos = 0;
  let stack: PyValue[] = [];
  const marks: PyValue[][] = [];
  const memo = new Map<number, PyValue>();
  const storages = new Map<string, StorageRef>();
  let tensors = 0;

  const fail = (problem: string): never => {
    throw new PickleProblem(problem);
  };
  const need = (n: number): number => {
    if (n > bytes.byteLength - pos) fail(`the pickle ends inside an opcode at byte ${pos} (truncated?)`);
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = (): number => bytes[need(1)];
  const u16 = (): number => view.getUint16(need(2), true);
  const u32 = (): number => view.getUint32(need(4), true);
  const u64 = (): number => {
    const v = view.getBigUint64(need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`a length of ${v} bytes at byte ${pos - 8}`);
    return Number(v);
  };
  const raw = (n: number): Uint8Array => bytes.subarray(need(n), pos);
  const text = (n: number): string => {
    const data = raw(n);
    try {
      return utf8.decode(data);
    } catch {
      return fail(`a string at byte ${pos - n} is not valid UTF-8`);
    }
  };
  const line = (): string => {
    const end = bytes.subarray(pos, pos + PTH_LIMITS.globalName + 1).indexOf(0x0a) + pos;
    if (end < pos) fail(`a GLOBAL at byte ${pos} has no name line of at most ${PTH_LIMITS.globalName} characters`);
    return latin1.decode(raw(end - pos + 1)).slice(0, -1);
  };
  let containers = 0;
  const push = (v: PyValue): void => {
    if (stack.length >= PTH_LIMITS.stack) fail(`the pickle puts more than ${PTH_LIMITS.stack} values on its stack`);
    if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && ++containers > PTH_LIMITS.containers) {
      fail(`the pickle handles more than ${PTH_LIMITS.containers} objects`);
    }
    stack.push(v);
  };
  const pop = (): PyValue => {
    if (stack.length === 0) fail(`the pickle pops an empty stack at byte ${pos - 1}`);
    return stack.pop() as PyValue;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail(`the pickle reads an empty stack at byte ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const outer = marks.pop();
    if (!outer) fail(`the pickle closes a MARK it never opened at byte ${pos - 1}`);
    stack = outer as PyValue[];
    return items;
  };
  const int = (v: PyValue, what: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(`${what} is ${typeName(v)} ${clip(String(v))}, not an integer`);
    return v as number;
  };
  const ints = (v: PyValue, what: string): number[] => {
    if (!(v instanceof PyTuple)) return fail(`${what} is a ${typeName(v)}, not a tuple`);
    if (v.items.length > PTH_LIMITS.dims) fail(`${what} has ${v.items.length} dimensions (at most ${PTH_LIMITS.dims})`);
    return v.items.map((d) => {
      const n = int(d, `${what} holds a value that`);
      if (n < 0) fail(`${what} holds a negative value (${n})`);
      return n;
    });
  };
  const memoGet = (index: number): PyValue => {
    if (!memo.has(index)) fail(`the pickle reads memo entry ${index}, which it never stored`);
    return memo.get(index) as PyValue;
  };
  const memoPut = (index: number): void => {
    if (memo.size >= PTH_LIMITS.memo && !memo.has(index)) fail(`the pickle memoises more than ${PTH_LIMITS.memo} values`);
    memo.set(index, top());
  };
  const dictSet = (dict: PyValue, key: PyValue, value: PyValue): void => {
    if (!(dict instanceof PyDict)) fail(`the pickle sets an item on a ${typeName(dict)} at byte ${pos - 1}`);
    (dict as PyDict).entries.set(key, value);
  };
  const listAdd = (list: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(list)) fail(`the pickle appends to a ${typeName(list)} at byte ${pos - 1}`);
    for (const item of items) (list as PyValue[]).push(item);
  };
  const global = (module: string, name: string): PyGlobal => {
    if (!isAllowedGlobal(module, name)) {
      fail(
        `it refers to the Python object ${quote(`${module}.${name}`)}, which a state dict does not hold. Only tensors, ` +
          'numbers, strings, lists, tuples and dicts are read (no Python code from the file is run)',
      );
    }
    return new PyGlobal(module, name);
  };

  const persistentLoad = (pid: PyValue): StorageRef => {
    if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
      return fail(`a persistent id is ${typeName(pid)}, not ('storage', type, key, location, size)`);
    }
    const [, type, key, location, numelValue] = pid.items;
    if (!(type instanceof PyGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGE_DTYPES, type.name)) {
      return fail(`a storage has the type ${typeName(type)}, not one of torch.${Object.keys(STORAGE_DTYPES).join(', torch.')}`);
    }
    if (typeof key !== 'string') return fail(`a storage key is a ${typeName(key)}, not a string`);
    if (typeof location !== 'string') return fail(`the location of storage ${quote(key)} is a ${typeName(location)}, not a string`);
    const numel = int(numelValue, `the size of storage ${quote(key)}`);
    const dtype = STORAGE_DTYPES[type.name];
    if (numel < 0 || numel * DTYPE_SIZES[dtype] > PTH_LIMITS.tensorBytes) {
      fail(`storage ${quote(key)} claims ${numel} elements of ${dtype} (at most ${PTH_LIMITS.tensorBytes} bytes)`);
    }
    const known = storages.get(key);
    if (known) {
      if (known.dtype !== dtype || known.numel !== numel) fail(`storage ${quote(key)} is described twice, differently`);
      return known;
    }
    const storage = new StorageRef(key, dtype, numel);
    storages.set(key, storage);
    return storage;
  };

  const rebuildTensor = (args: PyValue[]): TensorRef => {
    if (args.length !== 6 && args.length !== 7) fail(`${REBUILD_TENSOR} gets ${args.length} arguments, not 6 or 7`);
    const [storage, offsetValue, sizeValue, strideValue, requiresGrad] = args;
    if (!(storage instanceof StorageRef)) return fail(`${REBUILD_TENSOR} gets a ${typeName(storage)}, not a storage`);
    const offset = int(offsetValue, 'a tensor\'s storage offset');
    if (offset < 0) fail(`a tensor's storage offset is negative (${offset})`);
    const shape = ints(sizeValue, 'a tensor\'s size');
    const stride = ints(strideValue, 'a tensor\'s stride');
    if (shape.length !== stride.length) fail(`a tensor has size [${shape.join(', ')}] but stride [${stride.join(', ')}]`);
    if (typeof requiresGrad !== 'boolean') fail(`a tensor's requires_grad is a ${typeName(requiresGrad)}, not a bool`);
    const numel = shape.reduce((n, d) => n * d, 1);
    if (numel > 0) {
      // The last element the view reaches must lie inside its storage.
      const last = shape.reduce((at, d, i) => at + (d - 1) * stride[i], offset);
      if (last >= storage.numel) {
        fail(
          `a tensor of size [${shape.join(', ')}], stride [${stride.join(', ')}] at offset ${offset} reaches past the end of ` +
            `storage ${quote(storage.key)} (${storage.numel} elements)`,
        );
      }
    }
    if (++tensors > PTH_LIMITS.tensors) fail(`it holds more than ${PTH_LIMITS.tensors} tensors`);
    return new TensorRef(storage, offset, shape, stride);
  };

  const reduce = (callable: PyValue, argsValue: PyValue): PyValue => {
    if (!(callable instanceof PyGlobal) || !CALLABLES.has(callable.qualifiedName)) {
      return fail(`the pickle calls a ${typeName(callable)}, which is not ${[...CALLABLES].join(', ')}`);
    }
    if (!(argsValue instanceof PyTuple)) return fail(`the pickle calls ${callable.qualifiedName} with a ${typeName(argsValue)}, not a tuple`);
    const args = argsValue.items;
    switch (callable.qualifiedName) {
      case ORDERED_DICT:
        if (args.length !== 0) fail(`${ORDERED_DICT} is called with ${args.length} arguments (a state dict calls it with none)`);
        return new PyDict(true);
      case REBUILD_TENSOR:
        return rebuildTensor(args);
      case ENCODE: {
        const [value, encoding] = args;
        if (args.length !== 2 || typeof value !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
          fail(`${ENCODE} is called with other arguments than (str, 'latin1')`);
        }
        return new Uint8Array(Buffer.from(value as string, 'latin1'));
      }
      default: {
        // _rebuild_parameter(data, requires_grad, backward_hooks): an nn.Parameter is its tensor here.
        if (args.length !== 3 || !(args[0] instanceof TensorRef)) fail(`${REBUILD_PARAMETER} gets other arguments than (tensor, bool, hooks)`);
        return args[0];
      }
    }
  };

  for (;;) {
    const opAt = pos;
    const op = u8();
    switch (op) {
      case 0x80: { // PROTO
        const protocol = u8();
        if (protocol < 2 || protocol > 5) fail(`it is pickle protocol ${protocol}; torch.save writes protocol 2 (2 to 5 are read)`);
        break;
      }
      case 0x95: need(8); break; // FRAME: a hint only
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail(`the pickle stops with ${stack.length} values on the stack and ${marks.length} open MARKs`);
        if (pos !== bytes.byteLength) fail(`${bytes.byteLength - pos} bytes follow the pickle's STOP`);
        return stack[0];
      case 0x28: // MARK
        if (marks.length >= PTH_LIMITS.marks) fail(`the pickle nests more than ${PTH_LIMITS.marks} MARKs`);
        marks.push(stack);
        stack = [];
        break;
      case 0x29: push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x74: push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); push(new PyTuple([pop(), b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); push(new PyTuple([pop(), b, c])); break; } // TUPLE3
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x6c: push(popMark()); break; // LIST
      case 0x61: { const item = pop(); listAdd(top(), [item]); break; } // APPEND
      case 0x65: { const items = popMark(); listAdd(top(), items); break; } // APPENDS
      case 0x7d: push(new PyDict(false)); break; // EMPTY_DICT
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) fail(`DICT at byte ${opAt} has an odd number of items`);
        const dict = new PyDict(false);
        for (let i = 0; i < items.length; i += 2) dict.entries.set(items[i], items[i + 1]);
        push(dict);
        break;
      }
      case 0x73: { const value = pop(); const key = pop(); dictSet(top(), key, value); break; } // SETITEM
      case 0x75: { // SETITEMS
        const items = popMark();
        if (items.length % 2) fail(`SETITEMS at byte ${opAt} has an odd number of items`);
        const dict = top();
        for (let i = 0; i < items.length; i += 2) dictSet(dict, items[i], items[i + 1]);
        break;
      }
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x71: memoPut(u8()); break; // BINPUT
      case 0x72: memoPut(u32()); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x68: push(memoGet(u8())); break; // BINGET
      case 0x6a: push(memoGet(u32())); break; // LONG_BINGET
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x4a: push(view.getInt32(need(4), true)); break; // BININT
      case 0x8a: case 0x8b: { // LONG1, LONG4: little-endian two's complement
        const n = op === 0x8a ? u8() : u32();
        if (n > 64) fail(`an integer of ${n} bytes at byte ${opAt}`);
        const digits = raw(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(digits[i]);
        if (n > 0 && digits[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        const small = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER);
        push(small ? Number(v) : v);
        break;
      }
      case 0x47: push(view.getFloat64(need(8), false)); break; // BINFLOAT
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x58: push(text(u32())); break; // BINUNICODE
      case 0x8c: push(text(u8())); break; // SHORT_BINUNICODE
      case 0x8d: push(text(u64())); break; // BINUNICODE8
      case 0x54: push(latin1.decode(raw(u32()))); break; // BINSTRING (Python 2 str)
      case 0x55: push(latin1.decode(raw(u8()))); break; // SHORT_BINSTRING
      case 0x42: push(raw(u32())); break; // BINBYTES
      case 0x43: push(raw(u8())); break; // SHORT_BINBYTES
      case 0x8e: push(raw(u64())); break; // BINBYTES8
      case 0x63: { const module = line(); push(global(module, line())); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail(`STACK_GLOBAL at byte ${opAt} names a ${typeName(module)}.${typeName(name)}`);
        push(global(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); push(reduce(pop(), args)); break; } // REDUCE
      case 0x62: { // BUILD: only an OrderedDict's attributes (its `_metadata`), which are ignored
        const state = pop();
        const target = top();
        if (!(target instanceof PyDict)) fail(`the pickle sets the state of a ${typeName(target)} (BUILD at byte ${opAt})`);
        void state;
        break;
      }
      case 0x51: push(persistentLoad(pop())); break; // BINPERSID
      default:
        fail(`it uses the pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${opAt}, which a state dict written by torch.save does not`);
    }
  }
}
