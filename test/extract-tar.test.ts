// extractTarGz on its own: all or nothing, the first cause reported, limits, and no write after it settles.
// (The hostile entries and the CIFAR-10 path are covered in cifar10.test.ts.)
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tar from 'tar';
import * as zlib from 'zlib';
import { extractTarGz } from '../lib/extract-tar';

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-extract-'));
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A tar entry: its 512-byte header and its data padded to whole blocks. */
function entry(name: string, data: Buffer, type: 'File' | 'Directory' = 'File'): Buffer {
  const header = new tar.Header({ path: name, mode: type === 'File' ? 0o644 : 0o755, size: data.length, type, mtime: new Date(0) });
  header.encode();
  const padded = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  data.copy(padded);
  return Buffer.concat([header.block as Buffer, padded]);
}

/** A gzipped tar of the entries, with the two zero blocks that end an archive. */
function archive(name: string, entries: Buffer[]): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, zlib.gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)])));
  return file;
}

function tree(dir: string): string[] {
  return fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).map(String).sort() : [];
}

test('extracts files and folders, contents intact', async () => {
  const a = Buffer.from('alpha');
  const b = Buffer.alloc(100_000, 7);
  const file = archive('ok.tar.gz', [entry('d/', Buffer.alloc(0), 'Directory'), entry('d/a.txt', a), entry('d/e/b.bin', b), entry('./top.txt', Buffer.alloc(0))]);
  const dest = path.join(tmp, 'out');
  await extractTarGz(file, dest);
  expect(tree(dest)).toEqual(['d', 'd/a.txt', 'd/e', 'd/e/b.bin', 'top.txt']);
  expect(fs.readFileSync(path.join(dest, 'd/a.txt')).equals(a)).toBe(true);
  expect(fs.readFileSync(path.join(dest, 'd/e/b.bin')).equals(b)).toBe(true);
});

test('a tar cut inside a file (the gzip stream itself whole) is reported as truncated; nothing stays, nothing comes back later', async () => {
  const whole = Buffer.concat([entry('a.bin', Buffer.alloc(300_000, 1)), entry('b.bin', Buffer.alloc(300_000, 2))]);
  const file = path.join(tmp, 'cut.tar.gz');
  fs.writeFileSync(file, zlib.gzipSync(whole.subarray(0, 450_000)));
  const dest = path.join(tmp, 'out');
  await expect(extractTarGz(file, dest)).rejects.toThrow(/cannot extract cut\.tar\.gz \(truncated, damaged, or not a tar\.gz\): .*Truncated input/);
  expect(fs.existsSync(dest)).toBe(false);
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(tree(tmp)).toEqual(['cut.tar.gz']);
});

test('a file listed twice is refused', async () => {
  const file = archive('twice.tar.gz', [entry('a.txt', Buffer.from('1')), entry('./a.txt', Buffer.from('2'))]);
  await expect(extractTarGz(file, path.join(tmp, 'out'))).rejects.toThrow('refused to extract twice.tar.gz: entry "./a.txt" appears twice');
  expect(tree(tmp)).toEqual(['twice.tar.gz']);
});

test('the limits: entries, bytes per file, bytes in all, with the hint on how to raise them', async () => {
  const three = archive('three.tar.gz', [entry('a', Buffer.alloc(600)), entry('b', Buffer.alloc(600)), entry('c', Buffer.alloc(600))]);
  const out = path.join(tmp, 'out');
  await expect(extractTarGz(three, out, { limits: { maxEntries: 2 } })).rejects.toThrow('refused to extract three.tar.gz: it has more than 2 entries');
  await expect(extractTarGz(three, out, { limits: { maxEntryBytes: 599 }, limitHint: 'raise it with X' })).rejects.toThrow(
    'refused to extract three.tar.gz: entry "a" is 600 B, more than the 599 B allowed for one file (raise it with X)',
  );
  await expect(extractTarGz(three, out, { limits: { maxTotalBytes: 1799 } })).rejects.toThrow('refused to extract three.tar.gz: it holds more than 1.8 KiB in all');
  expect(tree(tmp)).toEqual(['three.tar.gz']);
  await extractTarGz(three, out, { limits: { maxEntries: 3, maxEntryBytes: 600, maxTotalBytes: 1800 } });
  expect(tree(out)).toEqual(['a', 'b', 'c']);
  await expect(extractTarGz(three, path.join(tmp, 'x'), { limits: { maxEntries: 0 } })).rejects.toThrow('extract limit maxEntries must be a positive whole number, got 0');
});

test('an existing destination is an error and is left as it was', async () => {
  const file = archive('ok.tar.gz', [entry('a.txt', Buffer.from('new'))]);
  const dest = path.join(tmp, 'out');
  fs.mkdirSync(dest);
  fs.writeFileSync(path.join(dest, 'keep.txt'), 'mine');
  await expect(extractTarGz(file, dest)).rejects.toThrow(/EEXIST/);
  expect(tree(dest)).toEqual(['keep.txt']);
});

test('a missing archive is an error naming it', async () => {
  await expect(extractTarGz(path.join(tmp, 'none.tar.gz'), path.join(tmp, 'out'))).rejects.toThrow(/cannot read .*none\.tar\.gz: ENOENT/);
  expect(tree(tmp)).toEqual([]);
});
