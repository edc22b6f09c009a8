// TensorBoardWriter: event files that an independent reader (test/oracle/tfevents.py, its own
// CRC-32C and protobuf parser) reads back exactly, record by record, also after a crash.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { crc32c, maskedCrc32c, TensorBoardWriter } from '../lib/report/tensorboard';
import { PYTHON } from './helpers/python';
import { JsonFloat, READER, readEvents, runReader } from './helpers/tfevents';

const ROOT = path.join(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-tensorboard-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));


/** How the reader writes a float32: finite ones as numbers, the others by name. */
function asRead(value: number): JsonFloat {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(Math.fround(value))) return Math.fround(value) > 0 ? 'Infinity' : '-Infinity';
  return Math.fround(value);
}

/** The one event file in `folder`. */
function eventFile(folder: string): string {
  const names = fs.readdirSync(folder).filter((n) => n.startsWith('events.out.tfevents.'));
  expect(names).toHaveLength(1);
  return path.join(folder, names[0]);
}

function newFolder(name: string): string {
  return path.join(tmp, name);
}

describe('CRC-32C', () => {
  // "123456789" is the standard check value; the 32-byte vectors are RFC 3720's (iSCSI), appendix B.4.
  const vectors: [string, Buffer, number][] = [
    ['"123456789"', Buffer.from('123456789'), 0xe3069283],
    ['empty', Buffer.alloc(0), 0x00000000],
    ['"The quick brown fox jumps over the lazy dog"', Buffer.from('The quick brown fox jumps over the lazy dog'), 0x22620404],
    ['32 zero bytes', Buffer.alloc(32, 0), 0x8a9136aa],
    ['32 0xff bytes', Buffer.alloc(32, 0xff), 0x62a8ab43],
    ['bytes 0..31', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
    ['bytes 31..0', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
  ];

  it.each(vectors)('of %s', (_, data, crc) => {
    expect(crc32c(data)).toBe(crc);
  });

  it('the oracle reader computes the same vectors and the same masked CRCs', () => {
    const script = [
      'import json, sys; sys.path.insert(0, sys.argv[1]); import tfevents as t',
      'data = [bytes.fromhex(h) for h in json.loads(sys.argv[2])]',
      'print(json.dumps([[t.crc32c(d), t.masked(t.crc32c(d))] for d in data]))',
    ].join('\n');
    const hex = JSON.stringify(vectors.map(([, d]) => d.toString('hex')));
    const r = spawnSync(PYTHON, ['-c', script, path.dirname(READER), hex], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual(vectors.map(([, d, crc]) => [crc, maskedCrc32c(d)]));
  });

  it('is masked as TensorFlow masks it', () => {
    // ((0xe3069283 >>> 15) | (0xe3069283 << 17)) + 0xa282ead8 = (0x1c60d | 0x25060000) + 0xa282ead8, modulo 2^32.
    expect(maskedCrc32c(Buffer.from('123456789'))).toBe(0xc78ab0e5);
  });
});

describe('TensorBoardWriter', () => {
  it('writes a file-version event, then every scalar with its tag, step, value and wall time', () => {
    const folder = newFolder('roundtrip');
    const before = Date.now() / 1000;
    const w = new TensorBoardWriter(folder);
    const scalars: [string, number, number, number][] = [];
    for (let step = 0; step < 50; step++) {
      scalars.push(['train/loss', 2.5 / (step + 1), step, 1.7e9 + step * 0.125]);
      scalars.push(['train/accuracy', step / 50, step, 1.7e9 + step * 0.125 + 0.001]);
    }
    scalars.push(['lr', 1e-3, 2 ** 40, 1.7e9 + 100], ['ünïcödé/标签', -123.456, -1, 1.7e9 + 101]);
    for (const [tag, value, step, wall] of scalars) w.scalar(tag, value, step, wall);
    w.scalar('default/wall-time', 7, 3);
    w.close();
    const after = Date.now() / 1000;

    const name = /^events\.out\.tfevents\.(\d{10})\.(.+)\.(\d+)\.(\d+)$/.exec(path.basename(w.file));
    expect(name?.slice(2, 4)).toEqual([os.hostname(), String(process.pid)]);
    expect(Number(name?.[1])).toBeGreaterThanOrEqual(Math.floor(before));
    expect(eventFile(folder)).toBe(w.file);
    const [{ records, tail_bytes }] = readEvents(w.file);
    expect(tail_bytes).toBe(0);
    expect(records[0]).toEqual({ wall_time: expect.any(Number), file_version: 'brain.Event:2' });
    expect(records[0].wall_time).toBeGreaterThanOrEqual(before);
    expect(records[0].wall_time).toBeLessThanOrEqual(after);
    expect(records.slice(1, -1)).toEqual(
      scalars.map(([tag, value, step, wall]) => ({ wall_time: wall, step, summary: { value: [{ tag, simple_value: Math.fround(value) }] } })),
    );
    const last = records[records.length - 1];
    expect(last).toEqual({ wall_time: expect.any(Number), step: 3, summary: { value: [{ tag: 'default/wall-time', simple_value: 7 }] } });
    expect(last.wall_time).toBeGreaterThanOrEqual(before);
    expect(last.wall_time).toBeLessThanOrEqual(after);
  });

  it('writes NaN and ±Infinity as they are', () => {
    const folder = newFolder('non-finite');
    const w = new TensorBoardWriter(folder);
    const values = [NaN, Infinity, -Infinity, 1e40, -1e40, -0, 3.4028234663852886e38, 1e-46];
    values.forEach((v, step) => w.scalar('loss', v, step, 1.7e9));
    w.close();
    const [{ records }] = readEvents(w.file);
    expect(records.slice(1).map((r) => r.summary?.value[0].simple_value)).toEqual(values.map(asRead));
    expect(asRead(1e40)).toBe('Infinity'); // beyond float32, as TensorBoard's float field holds it
  });

  it('buffers records, appending them on flush(), after flushIntervalMs and when maxPendingBytes wait', async () => {
    const folder = newFolder('buffering');
    const w = new TensorBoardWriter(folder, { flushIntervalMs: 100, maxPendingBytes: 1024 });
    const count = () => readEvents(w.file)[0].records.length;
    expect(count()).toBe(1); // the file version is written at once
    w.scalar('a', 1, 0);
    expect(count()).toBe(1);
    w.flush();
    expect(count()).toBe(2);
    w.scalar('a', 2, 1);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(count()).toBe(3);
    const size = fs.statSync(w.file).size;
    let pending = 0;
    while (fs.statSync(w.file).size === size) {
      w.scalar('a', 3, 2 + ++pending);
      expect(pending).toBeLessThan(100); // each record is ~40 bytes: 1 KiB flushes well before this
    }
    expect(pending).toBeGreaterThan(10); // buffered until 1 KiB waited, not written one by one
    expect(count()).toBe(3 + pending);
    w.close();
  });

  it('leaves every earlier record readable when the last one is cut anywhere (a crash mid-write)', () => {
    const folder = newFolder('truncated');
    const w = new TensorBoardWriter(folder);
    for (let step = 0; step < 5; step++) w.scalar('loss', step / 10, step, 1.7e9 + step);
    w.close();
    const whole = fs.readFileSync(w.file);
    const complete = readEvents(w.file)[0].records;
    expect(complete).toHaveLength(6);
    // Where the last record starts: its length header tells how long the ones before it are.
    const starts: number[] = [];
    for (let at = 0; at < whole.length; at += 16 + Number(whole.readBigUInt64LE(at))) starts.push(at);
    expect(starts).toHaveLength(6);
    const last = starts[5];
    // Inside the length, its checksum, the data and the data's checksum; and one record earlier.
    const cuts = [last + 3, last + 8, last + 10, last + 12, last + 20, whole.length - 4, whole.length - 1, starts[4] + 14];
    const files = cuts.map((cut, i) => {
      const file = path.join(folder, `cut-${i}`);
      fs.writeFileSync(file, whole.subarray(0, cut));
      return file;
    });
    const read = readEvents(...files);
    const ends = [...starts.slice(1), whole.length];
    cuts.forEach((cut, i) => {
      const kept = ends.filter((end) => end <= cut).length;
      expect(read[i]).toEqual({ records: complete.slice(0, kept), tail_bytes: cut - ends[kept - 1] });
    });
  });

  it('a killed process loses only what it had not flushed', async () => {
    const folder = newFolder('killed');
    const script = `
      const { TensorBoardWriter } = require('./lib/report/tensorboard');
      const w = new TensorBoardWriter(${JSON.stringify(folder)}, { flushIntervalMs: 60000 });
      for (let step = 0; step < 3; step++) w.scalar('loss', step, step, 1.7e9);
      w.flush();
      w.scalar('loss', 99, 3, 1.7e9);
      process.kill(process.pid, 'SIGKILL');`;
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], { cwd: ROOT });
    const signal = await new Promise((resolve) => child.on('exit', (_, s) => resolve(s)));
    expect(signal).toBe('SIGKILL');
    const [{ records, tail_bytes }] = readEvents(eventFile(folder));
    expect(tail_bytes).toBe(0);
    expect(records.slice(1).map((r) => [r.step, r.summary?.value[0].simple_value])).toEqual([[0, 0], [1, 1], [2, 2]]);
  });

  it('the reader rejects a damaged record, so these checks can fail', () => {
    const folder = newFolder('damaged');
    const w = new TensorBoardWriter(folder);
    w.scalar('loss', 0.5, 1, 1.7e9);
    w.close();
    const data = fs.readFileSync(w.file);
    data[data.length - 6] ^= 0x01; // a bit of the float value
    fs.writeFileSync(w.file, data);
    const r = runReader([w.file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/data checksum mismatch/);
  });

  it('opens a new file per writer and refuses work once closed', () => {
    const folder = newFolder('two');
    const a = new TensorBoardWriter(folder);
    const b = new TensorBoardWriter(folder);
    expect(a.file).not.toBe(b.file);
    a.close();
    a.close();
    expect(() => a.scalar('x', 1, 0)).toThrow(/closed/);
    expect(() => b.scalar('', 1, 0)).toThrow(/tag/);
    expect(() => b.scalar('x', 1, 0.5)).toThrow(/step/);
    b.close();
    expect(readEvents(a.file, b.file).map((f) => f.records.length)).toEqual([1, 1]);
  });
});
