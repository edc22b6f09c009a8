// TensorBoard event files: `events.out.tfevents.<seconds>.<host>.<pid>.<n>` in a run folder, read by
// `tensorboard --logdir` while they grow. The file is a sequence of TFRecords (length, masked
// CRC-32C of the length, data, masked CRC-32C of the data), each holding one `Event` protobuf: first
// `file_version: "brain.Event:2"`, then one scalar summary per record. The three messages are
// encoded by hand (a few fields each); the checksum is crc-32's CRC-32C (Castagnoli).
//
// Records are buffered and appended in one write at least every `flushIntervalMs`, on flush() and on
// close(), so a crash loses at most the unflushed tail and never an earlier record. The writes are
// synchronous: a flush is a few hundred bytes every few seconds, and a synchronous close() can run
// in a `finally` or an exit handler.
import * as CRC32C from 'crc-32/crc32c';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export interface TensorBoardWriterOptions {
  /** The longest a record waits in memory before it is appended to the file (ms; default 2000). */
  flushIntervalMs?: number;
  /** Appends at once when this many bytes are waiting (default 64 KiB). */
  maxPendingBytes?: number;
}

export const EVENT_FILE_VERSION = 'brain.Event:2';
const EVENT_FILE_PREFIX = 'events.out.tfevents.';

/** CRC-32C (Castagnoli) of `data`, as an unsigned 32-bit number. */
export function crc32c(data: Uint8Array): number {
  return CRC32C.buf(data) >>> 0;
}

/** The CRC as TFRecord stores it: rotated right by 15 bits, plus a constant. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** One TFRecord: uint64 length, masked CRC of those 8 bytes, the data, masked CRC of the data (little-endian). */
export function tfRecord(data: Uint8Array): Buffer {
  const record = Buffer.alloc(8 + 4 + data.length + 4);
  record.writeBigUInt64LE(BigInt(data.length), 0);
  record.writeUInt32LE(maskedCrc32c(record.subarray(0, 8)), 8);
  record.set(data, 12);
  record.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return record;
}

// Protobuf wire format: a key (field number << 3 | wire type), then the value.
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

function varint(value: bigint): Buffer {
  const bytes: number[] = [];
  let v = BigInt.asUintN(64, value); // negative int64 as its two's complement, ten bytes
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    bytes.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return Buffer.from(bytes);
}

const key = (field: number, wireType: number): Buffer => varint(BigInt((field << 3) | wireType));
const bytesField = (field: number, data: Uint8Array): Buffer =>
  Buffer.concat([key(field, LENGTH_DELIMITED), varint(BigInt(data.length)), data]);

function doubleField(field: number, value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(value);
  return Buffer.concat([key(field, FIXED64), b]);
}

function floatField(field: number, value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(value); // NaN and ±Infinity stay what they are
  return Buffer.concat([key(field, FIXED32), b]);
}

/** `Event { wall_time = 1; file_version = 3 }`. */
export function encodeFileVersionEvent(wallTime: number): Buffer {
  return Buffer.concat([doubleField(1, wallTime), bytesField(3, Buffer.from(EVENT_FILE_VERSION))]);
}

/** `Event { wall_time = 1; step = 2; summary = 5 { value = 1 { tag = 1; simple_value = 2 } } }`. */
export function encodeScalarEvent(tag: string, value: number, step: number, wallTime: number): Buffer {
  const summaryValue = Buffer.concat([bytesField(1, Buffer.from(tag, 'utf8')), floatField(2, value)]);
  const summary = bytesField(1, summaryValue);
  return Buffer.concat([doubleField(1, wallTime), key(2, VARINT), varint(BigInt(step)), bytesField(5, summary)]);
}

/** Distinguishes the files one process opens in the same second. */
let fileCounter = 0;

export class TensorBoardWriter {
  /** The event file this writer appends to. */
  readonly file: string;
  private fd: number | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A failed timed flush, thrown by the next call rather than from a timer. */
  private failure: unknown;
  private readonly flushIntervalMs: number;
  private readonly maxPendingBytes: number;

  /** Creates `folder` if needed and a new event file in it, starting with the file-version record. */
  constructor(folder: string, options: TensorBoardWriterOptions = {}) {
    this.flushIntervalMs = options.flushIntervalMs ?? 2000;
    this.maxPendingBytes = options.maxPendingBytes ?? 64 * 1024;
    fs.mkdirSync(folder, { recursive: true });
    const seconds = String(Math.floor(Date.now() / 1000)).padStart(10, '0');
    for (;;) {
      const name = `${EVENT_FILE_PREFIX}${seconds}.${os.hostname()}.${process.pid}.${fileCounter++}`;
      try {
        this.fd = fs.openSync(path.join(folder, name), 'wx'); // never append to another writer's file
        this.file = path.join(folder, name);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
    }
    this.pending.push(tfRecord(encodeFileVersionEvent(Date.now() / 1000)));
    this.flush();
  }

  /** Records `value` under `tag` at `step`; `wallTime` in seconds since the epoch (default: now). */
  scalar(tag: string, value: number, step: number, wallTime: number = Date.now() / 1000): void {
    this.check();
    if (typeof tag !== 'string' || tag === '') throw new TypeError('TensorBoard tag must be a non-empty string');
    if (!Number.isSafeInteger(step)) throw new TypeError(`TensorBoard step must be an integer, got ${step}`);
    if (typeof value !== 'number') throw new TypeError(`TensorBoard value for ${tag} must be a number`);
    if (!Number.isFinite(wallTime)) throw new TypeError(`TensorBoard wall time must be finite, got ${wallTime}`);
    const record = tfRecord(encodeScalarEvent(tag, value, step, wallTime));
    this.pending.push(record);
    this.pendingBytes += record.length;
    if (this.pendingBytes >= this.maxPendingBytes) this.flush();
    else this.timer ??= setTimeout(() => this.timedFlush(), this.flushIntervalMs).unref();
  }

  /** Appends every buffered record to the file. */
  flush(): void {
    this.check();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const data = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    for (let written = 0; written < data.length; ) {
      written += fs.writeSync(this.fd as number, data, written, data.length - written);
    }
  }

  /** Flushes, syncs and closes the file. Calling it again does nothing. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      this.flush();
      fs.fsyncSync(this.fd);
    } finally {
      fs.closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private timedFlush(): void {
    this.timer = undefined;
    try {
      this.flush();
    } catch (error) {
      this.failure ??= error;
    }
  }

  private check(): void {
    if (this.fd === undefined) throw new Error(`TensorBoardWriter for ${this.file} is closed`);
    if (this.failure !== undefined) {
      const failure = this.failure;
      this.failure = undefined;
      throw failure;
    }
  }
}
