// Reading and writing the safetensors format (https://huggingface.co/docs/safetensors): an
// 8-byte little-endian header length N, N bytes of JSON describing each tensor
// ({ dtype, shape, data_offsets: [begin, end] } relative to the data section), then the raw
// little-endian row-major bytes. Every field is validated before any byte is trusted, so a
// malformed file gives a SafetensorsError naming the problem, never an out-of-bounds read.
import * as fs from 'fs';
import { writeFileAtomic } from './atomic-write';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_SIZES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface SafetensorsTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  constructor(source: string, problem: string) {
    super(`${source} is not a valid safetensors file: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

// The reference implementation refuses headers above 100 MB; so do we.
const MAX_HEADER_BYTES = 100_000_000;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function elementCount(shape: number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Parses and validates a whole safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array, source = 'the buffer'): SafetensorsFile {
  const fail = (problem: string): never => {
    throw new SafetensorsError(source, problem);
  };
  if (bytes.byteLength < 8) fail(`it is ${bytes.byteLength} bytes long, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getBigUint64(0, true);
  if (headerLength > BigInt(bytes.byteLength - 8)) {
    fail(`the header length (${headerLength} bytes) runs past the end of the file (${bytes.byteLength} bytes)`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) fail(`the header length (${headerLength} bytes) exceeds ${MAX_HEADER_BYTES}`);
  const n = Number(headerLength);

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (error) {
    fail(`the header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(header)) fail('the header is not a JSON object');
  const entries = header as Record<string, unknown>;

  const dataStart = 8 + n;
  const dataLength = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const spans: Array<{ name: string; begin: number; end: number }> = [];
  const tensors = new Map<string, SafetensorsTensor>();

  for (const [name, value] of Object.entries(entries)) {
    if (name === '__metadata__') {
      if (!isPlainObject(value)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!isPlainObject(value)) fail(`the entry for '${name}' is not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZES)) {
      fail(`'${name}' has unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`'${name}' has an invalid shape ${JSON.stringify(shape)} (expected an array of non-negative integers)`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      fail(`'${name}' has invalid data_offsets ${JSON.stringify(offsets)} (expected [begin, end] with 0 <= begin <= end)`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) fail(`'${name}' data_offsets [${begin}, ${end}] run past the data section (${dataLength} bytes)`);
    const typed = dtype as SafetensorsDtype;
    const dims = shape as number[];
    const expected = elementCount(dims) * DTYPE_SIZES[typed];
    if (end - begin !== expected) {
      fail(`'${name}' holds ${end - begin} bytes but shape [${dims.join(', ')}] of ${typed} needs ${expected}`);
    }
    spans.push({ name, begin, end });
    // A plain Uint8Array view (not a Buffer, whose slice() would not copy).
    const data = new Uint8Array(bytes.buffer, bytes.byteOffset + dataStart + begin, end - begin);
    tensors.set(name, { dtype: typed, shape: dims, data });
  }

  // The data section must be covered exactly: no overlaps, no holes, nothing trailing.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const span of spans) {
    if (span.begin < cursor) fail(`'${span.name}' overlaps the tensor before it (offset ${span.begin} < ${cursor})`);
    if (span.begin > cursor) fail(`there is a gap of ${span.begin - cursor} bytes before '${span.name}'`);
    cursor = span.end;
  }
  if (cursor !== dataLength) fail(`${dataLength - cursor} bytes after the last tensor are not described by the header`);
  return { tensors, metadata };
}

/** A copy of an F32 tensor's values as a Float32Array (aligned, independent of the file bytes). */
export function float32Values(tensor: SafetensorsTensor): Float32Array {
  if (tensor.dtype !== 'F32') throw new Error(`expected an F32 tensor; got ${tensor.dtype}`);
  return new Float32Array(tensor.data.slice().buffer);
}

export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let bytes: Buffer;
  try {
    bytes = await fs.promises.readFile(file);
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return parseSafetensors(bytes, file);
}

/** Serialises tensors (in the given order) and optional string metadata. */
export function serializeSafetensors(
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string> = {},
): Buffer {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new Error("a tensor cannot be named '__metadata__'");
    const expected = elementCount(t.shape) * DTYPE_SIZES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new Error(`tensor '${name}' has ${t.data.byteLength} bytes but shape [${t.shape.join(', ')}] of ${t.dtype} needs ${expected}`);
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    chunks.push(t.data);
    offset += expected;
  }
  // Pad the header with spaces to a multiple of 8 so the data section stays aligned.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([prefix, Buffer.from(json, 'utf8'), ...chunks]);
}

/** Writes a safetensors file atomically: a temporary file in the same folder, then a rename. */
export async function writeSafetensors(
  file: string,
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(tensors, metadata));
}
