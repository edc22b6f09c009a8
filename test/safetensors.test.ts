// The safetensors reader and writer: round trips, every kind of malformed file, and loading
// weights into models (dtype conversion, strictness, the wrong model).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  InceptionV3, parseSafetensors, readSafetensors, SafetensorsError, serializeSafetensors, writeSafetensors, Xception,
} from '../lib';
import type { SafetensorsTensor } from '../lib';
import { PYTHON, requirePythonTorch } from './helpers/python';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-st-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const f32 = (values: number[]): Uint8Array => new Uint8Array(new Float32Array(values).buffer);

/** A file from a raw header (object or string) and data bytes. */
function fileWith(header: unknown, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Uint8Array {
  const json = header instanceof Uint8Array ? Buffer.from(header)
    : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(declaredLength ?? BigInt(json.length));
  return new Uint8Array(Buffer.concat([prefix, json, data]));
}

describe('round trip', () => {
  it('writes and reads tensors of each dtype, metadata, scalars and empty tensors', async () => {
    const tensors: Array<[string, SafetensorsTensor]> = [
      ['a', { dtype: 'F32', shape: [2, 3], data: f32([1, 2, 3, 4, 5, 6]) }],
      ['steps', { dtype: 'I64', shape: [], data: new Uint8Array(new BigInt64Array([42n]).buffer) }],
      ['half', { dtype: 'F16', shape: [2], data: new Uint8Array([0, 60, 0, 192]) }],
      ['brain', { dtype: 'BF16', shape: [1], data: new Uint8Array([128, 63]) }],
      ['empty', { dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) }],
    ];
    const file = path.join(dir, 'round.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt' });
    const bytes = fs.readFileSync(file);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);  // header padded for alignment
    const back = await readSafetensors(file);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect([...back.tensors.keys()]).toEqual(['a', 'steps', 'half', 'brain', 'empty']);
    for (const [name, t] of tensors) {
      const got = back.tensors.get(name)!;
      expect({ name, dtype: got.dtype, shape: got.shape, data: Array.from(got.data) })
        .toEqual({ name, dtype: t.dtype, shape: t.shape, data: Array.from(t.data) });
    }
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses to write a tensor whose bytes do not match its shape', () => {
    expect(() => serializeSafetensors([['x', { dtype: 'F32', shape: [3], data: f32([1, 2]) }]])).toThrow(/8 bytes but shape \[3\] of F32 needs 12/);
  });
});

describe('malformed files give a SafetensorsError naming the problem', () => {
  const good = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['shorter than the length prefix', new Uint8Array(5), /5 bytes long, shorter than the 8-byte header length/],
    ['truncated data', fileWith(good, f32([1])), /run past the data section \(4 bytes\)/],
    ['header length past the end', fileWith(good, f32([1, 2]), 1000n), /header length \(1000 bytes\) runs past the end/],
    ['huge header length', fileWith(good, f32([1, 2]), 0xffffffffffffffffn), /header length \(18446744073709551615 bytes\) runs past the end/],
    ['header that is not JSON', fileWith('{"x": [', new Uint8Array(0)), /not valid UTF-8 JSON/],
    ['header that is not UTF-8', fileWith(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), /not valid UTF-8 JSON \(.*encoded data was not valid/],
    ['header that is an array', fileWith([1, 2]), /not a JSON object/],
    ['unknown dtype', fileWith({ x: { dtype: 'F8', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2)), /'x' has unknown dtype "F8"/],
    ['negative dimension', fileWith({ x: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32([1, 2])), /'x' has an invalid shape \[-2\]/],
    ['reversed offsets', fileWith({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, f32([1, 2])), /'x' has invalid data_offsets \[8,0\]/],
    ['wrong dtype size', fileWith({ x: { dtype: 'F16', shape: [2], data_offsets: [0, 8] } }, f32([1, 2])), /'x' holds 8 bytes but shape \[2\] of F16 needs 4/],
    ['overlapping offsets', fileWith({
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, f32([1, 2, 3])), /'b' overlaps the tensor before it/],
    ['a hole between tensors', fileWith({
      a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
      b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
    }, f32([1, 2, 3])), /gap of 4 bytes before 'b'/],
    ['bytes not described by the header', fileWith(good, f32([1, 2, 3])), /4 bytes after the last tensor/],
    ['metadata that is not strings', fileWith({ __metadata__: { epoch: 3 } }), /__metadata__.epoch must be a string/],
  ];
  it.each(cases)('%s', (_label, bytes, message) => {
    let caught: unknown;
    try {
      parseSafetensors(bytes, 'bad.safetensors');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SafetensorsError);
    expect((caught as Error).message).toMatch(/^bad\.safetensors is not a valid safetensors file: /);
    expect((caught as Error).message).toMatch(message);
  });

  it('a header nested 5,000 levels deep, anywhere, gives a short SafetensorsError (no stack overflow)', () => {
    const deep = (levels: number, open: string, close: string, inner = '1') => open.repeat(levels) + inner + close.repeat(levels);
    const headers = [
      `{"x":{"dtype":"F32","shape":${deep(5000, '[', ']')},"data_offsets":[0,0]}}`,
      `{"x":{"dtype":"F32","shape":[1],"data_offsets":${deep(5000, '[', ']')}}}`,
      `{"x":{"dtype":${deep(5000, '{"a":', '}')},"shape":[],"data_offsets":[0,4]}}`,
      `{"__metadata__":{"k":${deep(5000, '[', ']')}}}`,
      deep(5000, '[', ']'),
      deep(100_000, '{"a":', '}'),
    ];
    for (const header of headers) {
      let caught: unknown;
      try {
        parseSafetensors(fileWith(header), 'deep.safetensors');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(SafetensorsError);
      expect((caught as Error).message).toBe('deep.safetensors is not a valid safetensors file: the header nests arrays or objects more than 16 levels deep');
    }
  });

  it('brackets inside strings are not nesting, and a valid file with them parses', () => {
    const name = `x${'[{'.repeat(5000)}\\"${']}'.repeat(10)}`;
    const file = parseSafetensors(fileWith(`{"__metadata__":{"note":"${'['.repeat(5000)}"},"${name}":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, f32([7])));
    expect(file.metadata.note).toBe('['.repeat(5000));
    expect([...file.tensors.keys()]).toEqual([JSON.parse(`"${name}"`)]);
  });

  it('messages quoting huge names or values stay short', () => {
    const long = 'n'.repeat(1_000_000);
    const headers: unknown[] = [
      { [long]: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } },
      { x: { dtype: long, shape: [1], data_offsets: [0, 1] } },
      { x: { dtype: 'F32', shape: Array.from({ length: 200_000 }, () => -1), data_offsets: [0, 4] } },
      { x: { dtype: 'F32', shape: Array.from({ length: 200_000 }, () => 0), data_offsets: [0, 4] } },
      { __metadata__: { [long]: 1 } },
      `{"${long}":`,
    ];
    for (const header of headers) {
      let caught: unknown;
      try {
        parseSafetensors(fileWith(header, new Uint8Array(4)), 'long.safetensors');
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(SafetensorsError);
      expect((caught as Error).message.length).toBeLessThan(500);
    }
  });

  it('a model refuses a malformed or missing file and stays usable', async () => {
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 0 });
    const bad = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(bad, fileWith(good, f32([1])));
    await expect(model.loadSafetensors(bad)).rejects.toThrow(/bad\.safetensors is not a valid safetensors file/);
    await expect(model.loadSafetensors(path.join(dir, 'nope.safetensors'))).rejects.toThrow(/cannot read .*nope\.safetensors: ENOENT/);
    expect(model.parameterCount()).toBeGreaterThan(0);
    model.dispose();
  });
});

describe('loading weights into models', () => {
  let xceptionFile: string;
  beforeAll(async () => {
    const model = new Xception({ numClasses: 10 });
    xceptionFile = path.join(dir, 'xception.safetensors');
    await model.saveSafetensors(xceptionFile);
    model.dispose();
  });

  it('names missing and unexpected keys when the file belongs to another model', async () => {
    const inception = new InceptionV3({ numClasses: 10, auxLogits: false });
    await expect(inception.loadSafetensors(xceptionFile)).rejects.toThrow(
      /cannot load .* into InceptionV3:\n {2}\d+ missing key\(s\): Conv2d_1a_3x3\.conv\.weight.*\n {2}\d+ unexpected key\(s\): conv1\.weight/,
    );
    inception.dispose();
  });

  it('reports shape mismatches by name, strict or not', async () => {
    const wide = new Xception({ numClasses: 1000 });
    for (const strict of [true, false]) {
      await expect(wide.loadSafetensors(xceptionFile, { strict })).rejects.toThrow(
        /shape mismatch\(es\): fc\.weight: file \[10, 2048\], model \[1000, 2048\]/,
      );
    }
    wide.dispose();
  });

  it('non-strict loading takes the keys present and leaves the rest', async () => {
    const source = await readSafetensors(xceptionFile);
    const partial = path.join(dir, 'fc-only.safetensors');
    await writeSafetensors(partial, [['fc.weight', source.tensors.get('fc.weight')!], ['extra.thing', source.tensors.get('fc.bias')!]]);
    const model = new Xception({ numClasses: 10 });
    await expect(model.loadSafetensors(partial)).rejects.toThrow(/275 missing key\(s\)[\s\S]*1 unexpected key\(s\): extra\.thing/);
    await model.loadSafetensors(partial, { strict: false });
    const out = path.join(dir, 'after-partial.safetensors');
    await model.saveSafetensors(out);
    const after = (await readSafetensors(out)).tensors;
    expect(Array.from(after.get('fc.weight')!.data)).toEqual(Array.from(source.tensors.get('fc.weight')!.data));
    expect(Array.from(after.get('conv1.weight')!.data)).not.toEqual(Array.from(source.tensors.get('conv1.weight')!.data));
    model.dispose();
  });

  it('converts F16 and BF16 files (written by PyTorch) to the model\'s float32, and refuses unsupported dtypes', async () => {
    requirePythonTorch();
    const oracleDir = path.join(__dirname, 'oracle');
    const script = [
      'import sys; sys.path.insert(0, sys.argv[1]); import safetensors_io as s, torch',
      'w = s.load(sys.argv[2])',
      's.save(sys.argv[3], {k: (v.half() if v.is_floating_point() else v) for k, v in w.items()})',
      's.save(sys.argv[4], {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in w.items()})',
      // what the model should hold afterwards: the rounded values back in float32
      's.save(sys.argv[5], {k: (v.half().float() if v.is_floating_point() else v) for k, v in w.items()})',
      's.save(sys.argv[6], {k: (v.bfloat16().float() if v.is_floating_point() else v) for k, v in w.items()})',
    ].join('\n');
    const files = ['f16', 'bf16', 'f16-expected', 'bf16-expected'].map((n) => path.join(dir, `${n}.safetensors`));
    const r = spawnSync(PYTHON, ['-c', script, oracleDir, xceptionFile, ...files], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    for (const [file, expectedFile] of [[files[0], files[2]], [files[1], files[3]]]) {
      const model = new Xception({ numClasses: 10 });
      await model.loadSafetensors(file);
      const out = path.join(dir, 'converted.safetensors');
      await model.saveSafetensors(out);
      const got = (await readSafetensors(out)).tensors;
      const want = (await readSafetensors(expectedFile)).tensors;
      for (const key of ['conv1.weight', 'block3.rep.4.pointwise.weight', 'fc.bias', 'bn1.running_var']) {
        expect({ key, same: Buffer.compare(Buffer.from(got.get(key)!.data), Buffer.from(want.get(key)!.data)) })
          .toEqual({ key, same: 0 });
      }
      model.dispose();
    }

    const source = await readSafetensors(xceptionFile);
    const int32 = path.join(dir, 'int32.safetensors');
    const entries = [...source.tensors.entries()].map(([k, t]): [string, SafetensorsTensor] =>
      k === 'fc.bias' ? [k, { ...t, dtype: 'I32' }] : [k, t]);
    await writeSafetensors(int32, entries);
    const model = new Xception({ numClasses: 10 });
    await expect(model.loadSafetensors(int32)).rejects.toThrow(/'fc\.bias' has dtype I32; supported are F32, F16, BF16, F64, I64/);
    model.dispose();
  });
});
