// Loading PyTorch weights natively: state dicts written by Python's torch.save (test/oracle/
// pth_weights.py) load into the models and give PyTorch's eval logits; old 2-D pointwise weights,
// half and bfloat16 storages, non-contiguous views and nested checkpoints load; a classifier of
// another size is reset exactly with resetHead and named without it; legacy, foreign and damaged
// files give clear errors (the reader is fuzzed: never a crash or a hang).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InceptionV3, loadWeights, ModelError, parsePth, PthError, readSafetensors, readWeightsFile, Xception } from '../lib';
import type { Model } from '../lib';
import { inspectPickle } from '../lib/weights/pth';
import { PYTHON, requirePythonTorch } from './helpers/python';
import { createRng } from '../lib/random';
import { readTensor, relativeError } from './helpers/tensors';

const TOLERANCE = 1e-4;
const SIZE = 80;

interface Manifest {
  tiny: Record<string, { dtype: string; shape: number[]; hex: string }>;
}

let dir: string;
let manifest: Manifest;
const file = (name: string): string => path.join(dir, name);

beforeAll(() => {
  requirePythonTorch();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-weights-'));
  const oracle = path.join(__dirname, 'oracle', 'pth_weights.py');
  const r = spawnSync(PYTHON, [oracle, 'make', '--dir', dir, '--size', String(SIZE)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pth_weights.py failed (exit ${r.status}):\n${r.stderr}`);
  manifest = JSON.parse(r.stdout) as Manifest;
}, 300_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The model's eval logits for the reference input of `name`, and their relative error to PyTorch's. */
async function logitsError(model: Model, name: string): Promise<number> {
  const input = await readTensor(file(`${name}.input.safetensors`), 'x');
  const reference = await readTensor(file(`${name}.logits.safetensors`), 'logits');
  const ours = await model.eval().forward(input);
  expect(ours.shape).toEqual(reference.shape);
  return relativeError(ours.data, reference.data);
}

/** The names whose bytes differ between two states (jest's toEqual is far too slow for 100 MB). */
function differing(a: Map<string, Buffer>, b: Map<string, Buffer>, keys = [...a.keys()]): string[] {
  return keys.filter((k) => !a.get(k) || !b.get(k) || !a.get(k)!.equals(b.get(k)!));
}

/** The model's state dict, by name, as bytes. */
async function stateOf(model: Model): Promise<Map<string, Buffer>> {
  const out = file(`state-${process.hrtime.bigint()}.safetensors`);
  await model.saveSafetensors(out);
  const tensors = (await readSafetensors(out)).tensors;
  fs.rmSync(out);
  return new Map([...tensors].map(([k, t]) => [k, Buffer.from(t.data)]));
}

describe('PyTorch state dicts load and give PyTorch\'s logits', () => {
  // [label, model, file, reference logits, whether to show first that the check can fail]
  const cases: Array<[string, () => Model, string, string, boolean]> = [
    ['torchvision Inception V3 with aux logits', () => new InceptionV3(), 'inception_aux.pth', 'inception_aux', true],
    ['torchvision Inception V3 without aux logits', () => new InceptionV3({ auxLogits: false }), 'inception_noaux.pth', 'inception_aux', false],
    ['timm-named Xception', () => new Xception(), 'xception.pth', 'xception', true],
    ['Xception with 2-D pointwise weights (old Xception files)', () => new Xception(), 'xception_2d.pth', 'xception', false],
    ['Xception from transposed, permuted and shared-storage views', () => new Xception(), 'xception_noncontig.pth', 'xception', false],
    ['Xception from a checkpoint\'s state_dict entry (with optimizer state)', () => new Xception(), 'xception_nested.pth', 'xception', false],
    ['Xception from a checkpoint\'s model entry with DataParallel\'s module. names', () => new Xception(), 'xception_module.pth', 'xception', false],
  ];
  it.each(cases)(`%s (1000 classes, relative error <= ${TOLERANCE})`, async (_label, make, weights, reference, canFail) => {
    const model = make();
    // The check can fail: the model's own initialisation does not give PyTorch's logits.
    if (canFail) expect(await logitsError(model, reference)).toBeGreaterThan(0.01);
    const result = await model.loadWeights(file(weights));
    expect(result.loaded).toEqual(model.stateDictKeys());
    expect(result.reset).toEqual([]);
    expect(result.ignored).toEqual([]);
    expect(await logitsError(model, reference)).toBeLessThanOrEqual(TOLERANCE);
    model.dispose();
  });

  it('half and bfloat16 storages load as their values in float32', async () => {
    for (const dtype of ['f16', 'bf16']) {
      const model = new Xception();
      const read = await readWeightsFile(file(`xception_${dtype}.pth`));
      expect(read.format).toBe('pytorch');
      expect(read.tensors.get('conv1.weight')!.dtype).toBe(dtype === 'f16' ? 'F16' : 'BF16');
      expect(read.tensors.get('bn1.num_batches_tracked')!.dtype).toBe('I64');
      await model.loadWeights(file(`xception_${dtype}.pth`));
      const state = await stateOf(model);
      const expected = (await readSafetensors(file(`xception_${dtype}.expected.safetensors`))).tensors;
      expect(expected.size).toBe(4);
      for (const [key, t] of expected) {
        expect({ dtype, key, same: Buffer.compare(state.get(key)!, Buffer.from(t.data)) }).toEqual({ dtype, key, same: 0 });
      }
      // ... close to, but not, the float32 originals.
      expect(await logitsError(model, 'xception')).toBeLessThan(0.1);
      model.dispose();
    }
  });

  it('the format is told by content: a zip named .safetensors and a safetensors file named .bin both load', async () => {
    const source = new Xception();
    await source.loadWeights(file('xception.pth'));
    await source.saveSafetensors(file('ours.safetensors'));
    source.dispose();
    fs.copyFileSync(file('ours.safetensors'), file('ours.bin'));
    fs.copyFileSync(file('xception.pth'), file('zip.safetensors'));
    const model = new Xception();
    const result = await loadWeights(model, file('ours.bin'));
    expect(result.loaded).toHaveLength(model.stateDictKeys().length);
    expect(await logitsError(model, 'xception')).toBeLessThanOrEqual(TOLERANCE);
    model.dispose();
    expect((await readWeightsFile(file('ours.bin'))).format).toBe('safetensors');
    const zip = await readWeightsFile(file('zip.safetensors'));
    expect(zip.format).toBe('pytorch');
    expect(zip.tensors.size).toBe(result.loaded.length);
  });
});

describe('a classifier of another size', () => {
  it('resetHead loads Inception V3\'s backbone and leaves exactly fc and AuxLogits.fc at the model\'s values', async () => {
    const model = new InceptionV3({ numClasses: 10 });
    const before = await stateOf(model);
    const head = ['AuxLogits.fc.weight', 'AuxLogits.fc.bias', 'fc.weight', 'fc.bias'];

    // Without resetHead: a clear error naming the mismatched tensors, and nothing changed.
    const refusal = model.loadWeights(file('inception_aux.pth'));
    await expect(refusal).rejects.toBeInstanceOf(ModelError);
    await expect(refusal).rejects.toThrow(new RegExp(
      'cannot load .*inception_aux\\.pth into InceptionV3:\\n {2}4 shape mismatch\\(es\\): ' +
        'AuxLogits\\.fc\\.weight: file \\[1000, 768\\], model \\[10, 768\\], AuxLogits\\.fc\\.bias: file \\[1000\\], model \\[10\\], ' +
        'fc\\.weight: file \\[1000, 2048\\], model \\[10, 2048\\], fc\\.bias: file \\[1000\\], model \\[10\\]\\n {2}' +
        'the classifier differs: loadWeights\\(file, \\{ resetHead: true \\}\\)',
    ));
    expect(differing(await stateOf(model), before)).toEqual([]);

    const result = await model.loadWeights(file('inception_aux.pth'), { resetHead: true });
    expect(result.reset).toEqual(head);
    expect(result.loaded).toEqual(model.stateDictKeys().filter((k) => !head.includes(k)));
    const after = await stateOf(model);
    const source = (await readWeightsFile(file('inception_aux.pth'))).tensors;
    expect(differing(after, before, head)).toEqual([]);
    const fromFile = new Map([...source].map(([k, t]) => [k, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)]));
    expect(differing(after, fromFile, result.loaded)).toEqual([]);
    expect(differing(after, before, ['Conv2d_1a_3x3.conv.weight', 'Mixed_7c.branch_pool.conv.weight'])).toHaveLength(2);
    model.dispose();
  });

  it('resetHead on Xception resets fc only; with a matching classifier it resets nothing', async () => {
    const ten = new Xception({ numClasses: 10 });
    await expect(ten.loadWeights(file('xception.pth'))).rejects.toThrow(/2 shape mismatch\(es\): fc\.weight: file \[1000, 2048\], model \[10, 2048\], fc\.bias/);
    expect((await ten.loadWeights(file('xception.pth'), { resetHead: true })).reset).toEqual(['fc.weight', 'fc.bias']);
    ten.dispose();
    const full = new Xception();
    expect((await full.loadWeights(file('xception.pth'), { resetHead: true })).reset).toEqual([]);
    expect(await logitsError(full, 'xception')).toBeLessThanOrEqual(TOLERANCE);
    full.dispose();
  });

  it('resetHead does not excuse other mismatches, and strictness still names unexpected keys', async () => {
    const notebook = new Xception({ variant: 'notebook', numClasses: 10 });
    await expect(notebook.loadWeights(file('xception.pth'), { resetHead: true })).rejects.toThrow(/missing key\(s\): conv1\.bias/);
    notebook.dispose();
    const noAux = new InceptionV3({ auxLogits: false });
    await expect(noAux.loadWeights(file('inception_aux.pth'))).rejects.toThrow(/\d+ unexpected key\(s\): AuxLogits\.conv0\.conv\.weight/);
    const result = await noAux.loadWeights(file('inception_aux.pth'), { strict: false });
    expect(result.ignored.length).toBeGreaterThan(10);
    expect(result.ignored.every((k) => k.startsWith('AuxLogits.'))).toBe(true);
    expect(result.loaded).toEqual(noAux.stateDictKeys());
    noAux.dispose();
  });
});

describe('reading torch.save files', () => {
  it('reads every storage type, scalars, empty tensors and strided views, in row-major order', async () => {
    const { tensors } = await parsePth(fs.readFileSync(file('tiny.pth')), 'tiny.pth');
    expect([...tensors.keys()]).toEqual(Object.keys(manifest.tiny));
    for (const [name, want] of Object.entries(manifest.tiny)) {
      const got = tensors.get(name)!;
      expect({ name, dtype: got.dtype, shape: got.shape, hex: Buffer.from(got.data).toString('hex') }).toEqual({ name, ...want });
    }
  });

  it('a legacy (pre-1.6) file gets the command that converts it', async () => {
    const model = new Xception();
    const legacy = file('legacy.pth');
    await expect(model.loadWeights(legacy)).rejects.toThrow(
      `${legacy} is in PyTorch's legacy format (torch.save before PyTorch 1.6, or with _use_new_zipfile_serialization=False), ` +
        'which only Python reads. Convert it once to the zip format with:\n' +
        `  python3 -c "import torch; torch.save(torch.load('${legacy}', map_location='cpu'), '${legacy.replace(/\.pth$/, '-zip.pth')}')"`,
    );
    // The command works.
    const r = spawnSync(PYTHON, ['-c', `import torch; torch.save(torch.load('${legacy}', map_location='cpu'), '${file('legacy-zip.pth')}')`]);
    expect(r.status).toBe(0);
    expect([...(await readWeightsFile(file('legacy-zip.pth'))).tensors.keys()]).toEqual(['conv1.weight', 'bn1.weight']);
    model.dispose();
  });

  it('refuses Python objects outside a state dict, TorchScript archives and other files, by name', async () => {
    await expect(readWeightsFile(file('namespace.pth'))).rejects.toThrow(
      /namespace\.pth as a PyTorch state dict: it refers to the Python object 'argparse\.Namespace', which a state dict does not hold.*no Python code from the file is run/,
    );
    await expect(readWeightsFile(file('torchscript.pt'))).rejects.toThrow(/it is a TorchScript archive \(torch\.jit\.save\), not a state dict/);
    fs.writeFileSync(file('notes.pth'), 'just some text, long enough');
    await expect(readWeightsFile(file('notes.pth'))).rejects.toThrow(/it is neither a safetensors file nor a zip written by torch\.save/);
    await expect(readWeightsFile(file('missing.pth'))).rejects.toThrow(/cannot read .*missing\.pth: ENOENT/);
  });
});

describe('damaged and hostile files give a PthError, never a crash or a hang', () => {
  async function outcome(bytes: Uint8Array): Promise<'read' | 'refused'> {
    try {
      await parsePth(bytes, 'fuzzed.pth');
      return 'read';
    } catch (error) {
      expect(error).toBeInstanceOf(PthError);
      expect((error as Error).message).toMatch(/^fuzzed\.pth (is in PyTorch's legacy format|as a PyTorch state dict)|^cannot read fuzzed\.pth as a PyTorch state dict: /);
      expect((error as Error).message.length).toBeLessThan(600);
      return 'refused';
    }
  }

  it('truncated at every length', async () => {
    const bytes = fs.readFileSync(file('tiny.pth'));
    const outcomes = new Set<string>();
    for (let n = 0; n < bytes.length; n += 7) outcomes.add(await outcome(bytes.subarray(0, n)));
    expect([...outcomes]).toEqual(['refused']);
  });

  it('with random bytes changed', async () => {
    const bytes = fs.readFileSync(file('tiny.pth'));
    const rng = createRng(11);
    const counts = { read: 0, refused: 0 };
    for (let i = 0; i < 600; i++) {
      const copy = Buffer.from(bytes);
      for (let k = 1 + Math.floor(rng() * 3); k > 0; k--) copy[Math.floor(rng() * copy.length)] = Math.floor(rng() * 256);
      counts[await outcome(copy)]++;
    }
    expect(counts.refused).toBeGreaterThan(100);  // the CRC-32 catches changed data
  });

  it('a pickle with random bytes changed, inserted or cut', () => {
    const pickle = fs.readFileSync(file('tiny.data.pkl'));
    const rng = createRng(5);
    const counts = { read: 0, refused: 0 };
    for (let i = 0; i < 3000; i++) {
      let copy = Buffer.from(pickle);
      const at = Math.floor(rng() * copy.length);
      const kind = i % 3;
      if (kind === 0) copy[at] = Math.floor(rng() * 256);
      else if (kind === 1) copy = Buffer.concat([copy.subarray(0, at), Buffer.from([Math.floor(rng() * 256)]), copy.subarray(at)]);
      else copy = Buffer.concat([copy.subarray(0, at), copy.subarray(at + 1 + Math.floor(rng() * 8))]);
      try {
        inspectPickle(copy);
        counts.read++;
      } catch (error) {
        expect(error).toBeInstanceOf(PthError);
        expect((error as Error).message.length).toBeLessThan(600);
        counts.refused++;
      }
    }
    expect(counts.read).toBeGreaterThan(0);
    expect(counts.refused).toBeGreaterThan(1000);
  });

  // Hand-written pickles: protocol 2 header, then opcodes.
  const p = (...parts: Array<string | number[]>): Uint8Array =>
    Buffer.concat([Buffer.from([0x80, 0x02]), ...parts.map((x) => (typeof x === 'string' ? Buffer.from(x, 'latin1') : Buffer.from(x)))]);
  const str = (s: string): number[] => [0x58, s.length, 0, 0, 0, ...Buffer.from(s, 'latin1')];
  // {'w': _rebuild_tensor_v2(storage '0' of `numel` floats, offset, (3, 2), stride, False, None)}
  const tensorPickle = (numel: number, stride: [number, number], offset = 0): Uint8Array => p(
    '}', str('w'), 'ctorch._utils\n_rebuild_tensor_v2\n', '((', str('storage'), 'ctorch\nFloatStorage\n', str('0'), str('cpu'),
    [0x4b, numel], 't', 'Q', [0x4b, offset, 0x4b, 3, 0x4b, 2, 0x86, 0x4b, stride[0], 0x4b, stride[1], 0x86, 0x89], 'N', 't', 'R', 's.',
  );
  const hostile: Array<[string, Uint8Array, RegExp]> = [
    ['a global outside the allow-list', p('cos\nsystem\n', str('ls'), [0x85], 'R.'), /refers to the Python object 'os\.system'/],
    ['a STACK_GLOBAL outside the allow-list', p(str('builtins'), str('eval'), [0x93], '.'), /refers to the Python object 'builtins\.eval'/],
    ['a storage type called as a function', p('ctorch\nFloatStorage\n)R.'), /calls a torch\.FloatStorage, which is not/],
    ['MARKs nested 100,000 deep', p('('.repeat(100_000), '.'), /nests more than 1000 MARKs/],
    ['a stack of 200,000 lists', p(']'.repeat(200_000), '.'), /more than 100000 values on its stack/],
    ['a string longer than the pickle', p([0x58, 0xff, 0xff, 0xff, 0x7f], '.'), /ends inside an opcode/],
    ['bytes encoded other than as latin1', p('c_codecs\nencode\n', str('x'), str('utf-8'), [0x86], 'R.'), /_codecs\.encode is called with other arguments/],
    ['a memo entry never stored', p('h', [5], '.'), /memo entry 5, which it never stored/],
    ['an opcode a state dict does not use', p(']', [0x81], '.'), /opcode 0x81/],
    ['a huge integer', p([0x8b, 0, 0, 1, 0], '.'), /an integer of 65536 bytes/],
    ['a list that contains itself', p('}', str('a'), ']q', [0], 'h', [0], 'as.'), /maps 'a' to a list, not a tensor/],
    ['no state dict at all', p(']', '.'), /holds a list, not a state dict/],
    ['a view past the end of its storage', tensorPickle(5, [2, 1]), /size \[3, 2\], stride \[2, 1\] at offset 0 reaches past the end of storage '0' \(5 elements\)/],
    ['a view past the end by its offset', tensorPickle(6, [2, 1], 1), /reaches past the end of storage '0'/],
    ['bytes after STOP', p(']', '.', '.'), /1 bytes follow the pickle's STOP/],
    ['no STOP', p(']'), /ends inside an opcode/],
  ];
  it.each(hostile)('%s', (_label, bytes, message) => {
    expect(() => inspectPickle(bytes)).toThrow(message);
  });

  it('the hand-written tensor pickle is valid when it fits its storage (the cases above can pass)', () => {
    expect(inspectPickle(tensorPickle(6, [2, 1]))).toEqual([{ name: 'w', dtype: 'F32', shape: [3, 2] }]);
    expect(inspectPickle(tensorPickle(6, [1, 3]))).toEqual([{ name: 'w', dtype: 'F32', shape: [3, 2] }]);
  });
});
