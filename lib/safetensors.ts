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
    super(`${source} is not a valid safetensors file: ${clip(problem, MAX_PROBLEM_LENGTH)}`);
    this.name = 'SafetensorsError';
  }
}

// The reference implementation refuses headers above 100 MB; so do we.
const MAX_HEADER_BYTES = 100_000_000;
// A valid header nests three levels (the header, an entry, its shape); anything far deeper is
// refused before JSON.parse, so that no recursion over the parsed value can overflow the stack.
const MAX_HEADER_DEPTH = 16;
// Messages quote the file's own names and values; they are cut so that an error stays one short line.
const MAX_QUOTED_LENGTH = 80;
const MAX_PROBLEM_LENGTH = 400;

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A value of the header as it appears in a message: JSON, cut short. */
function quote(value: unknown): string {
  return clip(JSON.stringify(value) ?? String(value), MAX_QUOTED_LENGTH);
}

/** A tensor name as it appears in a message. */
function nameOf(name: string): string {
  return `'${clip(name, MAX_QUOTED_LENGTH)}'`;
}

/** The deepest nesting of arrays and objects in JSON text, scanning no further than `limit` + 1 levels. */
function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // Skip a string, with its escapes.
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return deepest;
}

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

  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch (error) {
    fail(`the header is not valid UTF-8 JSON (${(error as Error).message})`);
  }
  if (jsonDepth(text, MAX_HEADER_DEPTH) > MAX_HEADER_DEPTH) fail(`the header nests arrays or objects more than ${MAX_HEADER_DEPTH} levels deep`);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (error) {
    fail(`the header is not valid UTF-8 JSON (${clip((error as Error).message, 2 * MAX_QUOTED_LENGTH)})`);
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
        if (typeof v !== 'string') fail(`__metadata__.${clip(k, MAX_QUOTED_LENGTH)} must be a string`);
        metadata[k] = v as string;
      }
      continue;
    }
    if (!isPlainObject(value)) fail(`the entry for ${nameOf(name)} is not an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_SIZES)) {
      fail(`${nameOf(name)} has unknown dtype ${quote(dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${nameOf(name)} has an invalid shape ${quote(shape)} (expected an array of non-negative integers)`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      fail(`${nameOf(name)} has invalid data_offsets ${quote(offsets)} (expected [begin, end] with 0 <= begin <= end)`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataLength) fail(`${nameOf(name)} data_offsets [${begin}, ${end}] run past the data section (${dataLength} bytes)`);
    const typed = dtype as SafetensorsDtype;
    const dims = shape as number[];
    const expected = elementCount(dims) * DTYPE_SIZES[typed];
    if (end - begin !== expected) {
      fail(`${nameOf(name)} holds ${end - begin} bytes but shape ${clip(`[${dims.join(', ')}]`, MAX_QUOTED_LENGTH)} of ${typed} needs ${expected}`);
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
    if (span.begin < cursor) fail(`${nameOf(span.name)} overlaps the tensor before it (offset ${span.begin} < ${cursor})`);
    if (span.begin > cursor) fail(`there is a gap of ${span.begin - cursor} bytes before ${nameOf(span.name)}`);
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
  return parseSafetensors(await readFileBytes(file), file);
}

/** A whole file's bytes; a failure names the file and the system's code (ENOENT, EACCES, …). */
export async function readFileBytes(file: string): Promise<Buffer> {
  try {
    return await fs.promises.readFile(file);
  } catch (error) {
    throw new Error(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** Serialises tensors (in the given order) and optional string metadata. */
export function serializeSafetensors(
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string> = {},
): Buffer {
  return Buffer.concat(safetensorsChunks(tensors, metadata));
}

/** A safetensors file as the chunks it is made of: its length prefix, its header, then each tensor's bytes (not copied). */
function safetensorsChunks(tensors: Iterable<[string, SafetensorsTensor]>, metadata: Record<string, string>): Uint8Array[] {
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
  return [prefix, Buffer.from(json, 'utf8'), ...chunks];
}

/** Writes a safetensors file atomically: a temporary file in the same folder, then a rename. */
export async function writeSafetensors(
  file: string,
  tensors: Iterable<[string, SafetensorsTensor]>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(file, safetensorsChunks(tensors, metadata));
}
