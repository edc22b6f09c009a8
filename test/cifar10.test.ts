// CIFAR-10: the parser (on files in the real binary layout, written by the synthetic writer), the
// download path against a loopback server (never the real network, never ~/.cache), the split, and
// `xception-torch download`.
import { execFile } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import * as tar from 'tar';
import * as zlib from 'zlib';
import { defaultCacheDir } from '../lib/cache-dir';
import {
  CIFAR10_FOLDER, CIFAR10_MD5, CIFAR10_URL, EnsureCifar10Options, ensureCifar10, loadCifar10, parseCifar10Batch, readCifar10Folder,
  resolveCifar10Dir, splitTrainVal,
} from '../lib/datasets/cifar10';
import { generateSyntheticImages, SYNTHETIC_CLASS_NAMES, writeCifar10Archive, writeCifar10Binary } from '../lib/datasets/synthetic';
import { ImageSet } from '../lib/datasets/types';
import { clearProxyVariables, startLoopbackProxy } from './helpers/proxy-server';

// The loopback server must be reached directly, whatever proxy the shell sets.
clearProxyVariables();

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const BATCHES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin', 'test_batch.bin'];

// Odd sizes, so the train set does not divide evenly over the five files.
const DATA = {
  train: generateSyntheticImages(57, 11),
  test: generateSyntheticImages(13, 12),
  classNames: [...SYNTHETIC_CLASS_NAMES],
};

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-cifar10-'));
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Every path under `dir`, relative, sorted (links not followed). */
function listTree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).map(String).sort();
}

function expectSameSet(actual: ImageSet, expected: ImageSet): void {
  expect(actual.count).toBe(expected.count);
  expect([actual.channels, actual.height, actual.width]).toEqual([3, 32, 32]);
  expect(Buffer.from(actual.labels).equals(Buffer.from(expected.labels))).toBe(true);
  expect(Buffer.from(actual.images).equals(Buffer.from(expected.images))).toBe(true);
}

describe('defaultCacheDir', () => {
  test('XCEPTION_TORCH_CACHE, then XDG_CACHE_HOME/xception-torch, then ~/.cache/xception-torch', () => {
    expect(defaultCacheDir({ XCEPTION_TORCH_CACHE: '/a/b', XDG_CACHE_HOME: '/x', HOME: '/h' })).toBe('/a/b');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x', HOME: '/h' })).toBe('/x/xception-torch');
    expect(defaultCacheDir({ HOME: '/h' })).toBe('/h/.cache/xception-torch');
  });
});

describe('CIFAR-10 parser', () => {
  test('a record is one label byte then 3,072 image bytes, channel-major', () => {
    const bytes = new Uint8Array(2 * 3073);
    bytes[0] = 7;
    bytes[1] = 11; // R(0,0)
    bytes[1 + 1024] = 22; // G(0,0)
    bytes[1 + 2048 + 31] = 33; // B(0,31)
    bytes[3073] = 2;
    bytes[3073 + 3072] = 44; // last byte of image 1
    const set = parseCifar10Batch(bytes, 'x.bin');
    expect(set.count).toBe(2);
    expect(Array.from(set.labels)).toEqual([7, 2]);
    expect([set.images[0], set.images[1024], set.images[2048 + 31], set.images[2 * 3072 - 1]]).toEqual([11, 22, 33, 44]);
    expect(set.images.length).toBe(2 * 3072);
  });

  test('round trip through writeCifar10Binary → readCifar10Folder', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    expect(folder).toBe(path.join(tmp, CIFAR10_FOLDER));
    expect(fs.readdirSync(folder).sort()).toEqual(['batches.meta.txt', ...BATCHES].sort());
    const sizes = BATCHES.slice(0, 5).map((f) => fs.statSync(path.join(folder, f)).size);
    expect(sizes.every((s) => s % 3073 === 0)).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(57 * 3073);
    expect(fs.statSync(path.join(folder, 'test_batch.bin')).size).toBe(13 * 3073);

    const read = await readCifar10Folder(folder);
    expect(read.classNames).toEqual(SYNTHETIC_CLASS_NAMES);
    expectSameSet(read.train, DATA.train);
    expectSameSet(read.test, DATA.test);
  });

  test('any number of records per file works, empty files included', async () => {
    const train = generateSyntheticImages(3, 5);
    const folder = await writeCifar10Binary(tmp, { ...DATA, train }); // files of 0, 1, 0, 1, 1 records
    const counts = BATCHES.slice(0, 5).map((f) => fs.statSync(path.join(folder, f)).size / 3073);
    expect(counts).toEqual([0, 1, 0, 1, 1]);
    expectSameSet((await readCifar10Folder(folder)).train, train);

    const one = await writeCifar10Binary(path.join(tmp, 'one'), DATA, { trainFiles: 1 });
    const big = fs.readFileSync(path.join(one, 'data_batch_1.bin'));
    expect(parseCifar10Batch(big, 'data_batch_1.bin').count).toBe(57);
    expect(parseCifar10Batch(new Uint8Array(0), 'empty.bin').count).toBe(0);
  });

  test('a size that is not a multiple of 3,073 names the file, its size and the record size', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    const file = path.join(folder, 'data_batch_3.bin');
    const size = fs.statSync(file).size;
    fs.appendFileSync(file, Buffer.alloc(5));
    const err = (await readCifar10Folder(folder).catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(file);
    expect(err.message).toContain(`size ${size + 5} bytes`);
    expect(err.message).toMatch(/not a multiple of .*3073/);
    expect(err.message).toMatch(/5 bytes left over/);
    expect(() => parseCifar10Batch(new Uint8Array(3072), 'short.bin')).toThrow(/short\.bin: size 3072 bytes is not a multiple/);
  });

  test('a label of 10 or more names the file, the record and the label', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    const file = path.join(folder, 'test_batch.bin');
    const bytes = fs.readFileSync(file);
    bytes[2 * 3073] = 10;
    fs.writeFileSync(file, bytes);
    await expect(readCifar10Folder(folder)).rejects.toThrow(`${file}: record 2 (byte offset 6146) has label 10`);
    const bad = new Uint8Array(3073);
    bad[0] = 255;
    expect(() => parseCifar10Batch(bad, 'b.bin')).toThrow(/b\.bin: record 0 .*label 255; CIFAR-10 labels are 0 to 9/);
  });

  test('a missing batch file names the file and the folder', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    fs.rmSync(path.join(folder, 'data_batch_4.bin'));
    await expect(readCifar10Folder(folder)).rejects.toThrow(`CIFAR-10 file data_batch_4.bin is missing from ${folder}`);
    fs.rmSync(path.join(folder, 'test_batch.bin'));
    await expect(readCifar10Folder(path.join(tmp, 'nope'))).rejects.toThrow(/nope does not exist/);
  });

  test('a missing or wrong batches.meta.txt is an error naming it', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    const meta = path.join(folder, 'batches.meta.txt');
    fs.writeFileSync(meta, 'a\n\nb\r\nc\n');
    await expect(readCifar10Folder(folder)).rejects.toThrow(`${meta}: expected 10 class names (one a line), found 3`);
    fs.rmSync(meta);
    await expect(readCifar10Folder(folder)).rejects.toThrow(`CIFAR-10 file batches.meta.txt is missing from ${folder}`);
  });

  test('resolveCifar10Dir takes the folder holding cifar-10-batches-bin/ or that folder itself', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    expect(resolveCifar10Dir(tmp)).toBe(folder);
    expect(resolveCifar10Dir(folder)).toBe(folder);
    // A copy under another name is recognised by its files.
    const other = path.join(tmp, 'my-cifar');
    fs.cpSync(folder, other, { recursive: true });
    expect(resolveCifar10Dir(other)).toBe(other);
    fs.mkdirSync(path.join(tmp, 'empty'));
    expect(resolveCifar10Dir(path.join(tmp, 'empty'))).toBeUndefined();
    expect(resolveCifar10Dir(path.join(tmp, 'absent'))).toBeUndefined();
  });
});

describe('splitTrainVal', () => {
  /** n tiny "images" that each hold their own index (4 bytes), labels index % 10. */
  function indexed(n: number): ImageSet {
    const images = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) new DataView(images.buffer).setUint32(i * 4, i);
    const labels = new Uint8Array(n).map((_, i) => i % 10);
    return { images, labels, count: n, channels: 1, height: 1, width: 4 };
  }
  const ids = (s: ImageSet): number[] => Array.from({ length: s.count }, (_, i) => new DataView(s.images.buffer).getUint32(i * 4));

  test('45,000 / 5,000 from 50,000: disjoint, covering, labels kept with their images', () => {
    const set = indexed(50_000);
    const { train, val } = splitTrainVal(set, 5000, 0);
    expect([train.count, val.count]).toEqual([45_000, 5000]);
    const t = ids(train);
    const v = ids(val);
    const seen = new Uint8Array(50_000);
    for (const id of [...t, ...v]) seen[id]++;
    expect(seen.every((n) => n === 1)).toBe(true); // each image exactly once: disjoint and covering
    expect(t.filter((id, k) => train.labels[k] !== id % 10)).toEqual([]);
    expect(v.filter((id, k) => val.labels[k] !== id % 10)).toEqual([]);
    // A random draw: every class shows up in validation in roughly its share.
    const perClass = new Array(10).fill(0);
    v.forEach((id) => perClass[id % 10]++);
    expect(Math.min(...perClass)).toBeGreaterThan(400);
    expect(Math.max(...perClass)).toBeLessThan(600);
  });

  test('same seed, same split; different seed, different split', () => {
    const set = indexed(1000);
    const a = splitTrainVal(set, 100, 7);
    const b = splitTrainVal(set, 100, 7);
    const c = splitTrainVal(set, 100, 8);
    expect(ids(a.val)).toEqual(ids(b.val));
    expect(ids(a.train)).toEqual(ids(b.train));
    expect(ids(a.val)).not.toEqual(ids(c.val));
    const overlap = ids(a.val).filter((id) => new Set(ids(c.val)).has(id)).length;
    expect(overlap).toBeLessThan(40); // ~10 expected by chance
  });

  test('valSize must be an integer from 0 to count - 1', () => {
    const set = indexed(10);
    expect(splitTrainVal(set, 0, 0).train.count).toBe(10);
    expect(splitTrainVal(set, 9, 0).train.count).toBe(1);
    for (const bad of [-1, 10, 11, 1.5, NaN]) {
      expect(() => splitTrainVal(set, bad, 0)).toThrow(/valSize must be an integer from 0 to 9 \(the set has 10 images\)/);
    }
  });
});

describe('ensureCifar10 over a loopback server', () => {
  let server: http.Server;
  let base: string;
  let fixtures: string;
  let goodMd5: string;
  const requests: string[] = [];
  const CUTS = [10, 25, 40, 55, 70, 85, 95];
  const archives: Record<string, string> = {};
  const md5s: Record<string, string> = {};

  /** Serves `bytes` as `/name`, with its MD5 in md5s. */
  function addArchive(name: string, bytes: Buffer): void {
    const file = path.join(fixtures, name);
    fs.writeFileSync(file, bytes);
    archives[`/${name}`] = file;
    md5s[name] = crypto.createHash('md5').update(bytes).digest('hex');
  }

  /** An archive made with tar from `cwd` (preservePaths keeps `..` and absolute entries as written). */
  async function makeArchive(name: string, cwd: string, entries: string[]): Promise<void> {
    const file = path.join(fixtures, name);
    // jobs: 1 because tar 7.5 packing a hard link in parallel with other files can write after the end.
    await tar.c({ gzip: true, file, cwd, portable: true, preservePaths: true, jobs: 1 }, entries);
    archives[`/${name}`] = file;
    md5s[name] = crypto.createHash('md5').update(fs.readFileSync(file)).digest('hex');
  }

  beforeAll(async () => {
    fixtures = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-cifar10-fixtures-'));
    goodMd5 = (await writeCifar10Archive(path.join(fixtures, 'good.tar.gz'), DATA)).md5;
    archives['/good.tar.gz'] = path.join(fixtures, 'good.tar.gz');

    // `../../../evil` from the extraction folder (<target>/.cifar-10-download-*/extracted) is the
    // parent of the target: the test target is tmp/data, so it would land in tmp/evil.
    const deep = path.join(fixtures, 'evil', 'x', 'y', 'z');
    await writeCifar10Binary(deep, DATA);
    fs.writeFileSync(path.join(fixtures, 'evil', 'evil'), 'evil');
    await makeArchive('dotdot.tar.gz', deep, [CIFAR10_FOLDER, '../../../evil']);
    await makeArchive('absolute.tar.gz', deep, [CIFAR10_FOLDER, path.join(fixtures, 'evil', 'evil')]);

    const withLink = path.join(fixtures, 'link');
    const linkFolder = await writeCifar10Binary(withLink, DATA);
    fs.symlinkSync('../../../evil', path.join(linkFolder, 'evil-link'));
    await makeArchive('symlink.tar.gz', withLink, [CIFAR10_FOLDER]);

    const withHard = path.join(fixtures, 'hard');
    const hardFolder = await writeCifar10Binary(withHard, DATA);
    fs.linkSync(path.join(hardFolder, 'test_batch.bin'), path.join(hardFolder, 'zz-hard.bin'));
    await makeArchive('hardlink.tar.gz', withHard, [CIFAR10_FOLDER]);

    const incomplete = path.join(fixtures, 'incomplete');
    fs.rmSync(path.join(await writeCifar10Binary(incomplete, DATA), 'test_batch.bin'));
    await makeArchive('incomplete.tar.gz', incomplete, [CIFAR10_FOLDER]);

    // A bigger archive, cut short at several points: each cut is served with its own MD5, so only
    // the extraction can notice, and it does so while files are being written.
    const big = path.join(fixtures, 'big.tar.gz');
    await writeCifar10Archive(big, { ...DATA, train: generateSyntheticImages(1500, 21) });
    const bigBytes = fs.readFileSync(big);
    for (const percent of CUTS) {
      addArchive(`cut-${percent}.tar.gz`, bigBytes.subarray(0, Math.floor((bigBytes.length * percent) / 100)));
    }

    // A gzip bomb's front: a header that announces a 2 GiB file, then 4 MiB of its zeros.
    const header = new tar.Header({ path: `${CIFAR10_FOLDER}/data_batch_1.bin`, mode: 0o644, size: 2 * 1024 ** 3, type: 'File', mtime: new Date(0) });
    header.encode();
    addArchive('bomb-2g.tar.gz', zlib.gzipSync(Buffer.concat([header.block as Buffer, Buffer.alloc(4 * 1024 ** 2)])));

    // A bomb within tar's own decompression-ratio guard: 3 MiB of low-entropy bytes in one plausible file.
    const lowEntropy = Buffer.alloc(3 * 1024 ** 2);
    for (let i = 0; i < lowEntropy.length; i += 64) lowEntropy[i] = (i * 7919) % 251;
    const bombDir = path.join(fixtures, 'bomb');
    fs.mkdirSync(path.join(bombDir, CIFAR10_FOLDER), { recursive: true });
    fs.writeFileSync(path.join(bombDir, CIFAR10_FOLDER, 'data_batch_1.bin'), lowEntropy);
    await makeArchive('bomb-3m.tar.gz', bombDir, [CIFAR10_FOLDER]);

    const garbage = path.join(fixtures, 'garbage.tar.gz');
    fs.writeFileSync(garbage, crypto.randomBytes(5000));
    archives['/garbage.tar.gz'] = garbage;
    md5s['garbage.tar.gz'] = crypto.createHash('md5').update(fs.readFileSync(garbage)).digest('hex');

    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      requests.push(url);
      if (url === '/error') {
        res.writeHead(500);
        res.end('boom');
        return;
      }
      if (url === '/truncated.tar.gz') {
        const body = fs.readFileSync(archives['/good.tar.gz']);
        res.writeHead(200, { 'Content-Length': body.length });
        res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      const file = archives[url];
      if (!file) {
        res.writeHead(404);
        res.end();
        return;
      }
      const body = fs.readFileSync(file);
      res.writeHead(200, { 'Content-Length': body.length, 'Content-Type': 'application/gzip' });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    fs.rmSync(fixtures, { recursive: true, force: true });
  });

  beforeEach(() => {
    requests.length = 0;
  });

  test('the fixtures really hold the hostile entries', async () => {
    const entries = async (name: string): Promise<Array<[string, string]>> => {
      const seen: Array<[string, string]> = [];
      await tar.t({ file: path.join(fixtures, name), onReadEntry: (e) => { seen.push([e.path, e.type]); } });
      return seen;
    };
    expect(await entries('dotdot.tar.gz')).toContainEqual(['../../../evil', 'File']);
    expect((await entries('absolute.tar.gz')).some(([p]) => p.startsWith('/'))).toBe(true);
    expect(await entries('symlink.tar.gz')).toContainEqual([`${CIFAR10_FOLDER}/evil-link`, 'SymbolicLink']);
    expect((await entries('hardlink.tar.gz')).some(([, t]) => t === 'Link')).toBe(true);
  });

  test('downloads, checks the MD5, extracts and moves cifar-10-batches-bin into dataDir; the second call uses it', async () => {
    const dataDir = path.join(tmp, 'data');
    const folder = await ensureCifar10({ dataDir, url: `${base}/good.tar.gz`, md5: goodMd5, quiet: true });
    expect(folder).toBe(path.join(dataDir, CIFAR10_FOLDER));
    expect(listTree(dataDir)).toEqual([CIFAR10_FOLDER, ...['batches.meta.txt', ...BATCHES].sort().map((f) => path.join(CIFAR10_FOLDER, f))]);
    const read = await readCifar10Folder(folder);
    expectSameSet(read.train, DATA.train);
    expectSameSet(read.test, DATA.test);
    expect(requests).toEqual(['/good.tar.gz']);

    // Served from the cache: no request, even with a URL that would fail.
    expect(await ensureCifar10({ dataDir, url: `${base}/error`, quiet: true })).toBe(folder);
    expect(requests).toEqual(['/good.tar.gz']);
  });

  test('the cache folder comes from the environment: XCEPTION_TORCH_CACHE, or XDG_CACHE_HOME/xception-torch', async () => {
    const env = { XCEPTION_TORCH_CACHE: path.join(tmp, 'cache'), XCEPTION_TORCH_CIFAR10_URL: `${base}/good.tar.gz`, XCEPTION_TORCH_CIFAR10_MD5: goodMd5 };
    expect(await ensureCifar10({ env, quiet: true })).toBe(path.join(tmp, 'cache', CIFAR10_FOLDER));
    const xdg = { XDG_CACHE_HOME: path.join(tmp, 'xdg'), HOME: path.join(tmp, 'home'), XCEPTION_TORCH_CIFAR10_URL: `${base}/good.tar.gz` };
    expect(await ensureCifar10({ env: xdg, md5: goodMd5, quiet: true })).toBe(path.join(tmp, 'xdg', 'xception-torch', CIFAR10_FOLDER));
    expect(requests).toEqual(['/good.tar.gz', '/good.tar.gz']);
    expect(fs.existsSync(path.join(tmp, 'home'))).toBe(false);
    // Served from the cache the second time.
    expect(await ensureCifar10({ env, quiet: true })).toBe(path.join(tmp, 'cache', CIFAR10_FOLDER));
    expect(requests).toHaveLength(2);
  });

  test('loadCifar10 gives train / validation / test with the seeded split', async () => {
    await writeCifar10Binary(tmp, DATA);
    const splits = await loadCifar10({ dataDir: tmp, valSize: 7, seed: 3, url: `${base}/error` });
    expect(splits.name).toBe('cifar10');
    expect(splits.classNames).toEqual(SYNTHETIC_CLASS_NAMES);
    expect([splits.train.count, splits.val.count, splits.test.count]).toEqual([50, 7, 13]);
    expectSameSet(splits.test, DATA.test);
    const again = await loadCifar10({ dataDir: tmp, valSize: 7, seed: 3 });
    expect(Buffer.from(again.val.images).equals(Buffer.from(splits.val.images))).toBe(true);
    expect(requests).toEqual([]);
  });

  test('--data-dir / dataDir accepts the folder holding cifar-10-batches-bin/ or that folder itself', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    expect(await ensureCifar10({ dataDir: tmp, url: `${base}/error` })).toBe(folder);
    expect(await ensureCifar10({ dataDir: folder, url: `${base}/error` })).toBe(folder);
    expect(requests).toEqual([]);
    // A not-yet-existing folder named cifar-10-batches-bin is filled by downloading next to it.
    const named = path.join(tmp, 'fresh', CIFAR10_FOLDER);
    expect(await ensureCifar10({ dataDir: named, url: `${base}/good.tar.gz`, md5: goodMd5, quiet: true })).toBe(named);
    expect(listTree(path.join(tmp, 'fresh'))).toHaveLength(8);
  });

  test('an incomplete folder is an error naming what is missing, without a download', async () => {
    const folder = await writeCifar10Binary(tmp, DATA);
    fs.rmSync(path.join(folder, 'data_batch_2.bin'));
    await expect(ensureCifar10({ dataDir: tmp, url: `${base}/good.tar.gz`, md5: goodMd5 })).rejects.toThrow(
      `CIFAR-10 folder ${folder} is incomplete: data_batch_2.bin missing`,
    );
    expect(requests).toEqual([]);
  });

  /** The failure cases: an error, and nothing left behind: not the data folder it created, nor anything beside it. */
  async function expectFailure(url: string, md5: string | undefined, pattern: RegExp, extra: EnsureCifar10Options = {}): Promise<Error> {
    const dataDir = path.join(tmp, 'data');
    const err = (await ensureCifar10({ dataDir, url, md5, quiet: true, timeoutMs: 2000, ...extra }).catch((e: Error) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(pattern);
    expect(err.message).toContain(url);
    expect(err.message).toContain(path.join(dataDir, CIFAR10_FOLDER));
    expect(err.message).toContain('--data-dir DIR');
    expect(err.message).toContain('--dataset synthetic');
    expect(listTree(tmp)).toEqual([]);
    // An existing data folder stays, empty.
    fs.mkdirSync(dataDir);
    await expect(ensureCifar10({ dataDir, url, md5, quiet: true, timeoutMs: 2000, ...extra })).rejects.toThrow(pattern);
    expect(listTree(tmp)).toEqual(['data']);
    return err;
  }

  test('a wrong MD5 is an error and leaves nothing behind (the official MD5 applies by default)', async () => {
    const err = await expectFailure(`${base}/good.tar.gz`, undefined, /md5 mismatch.*expected c32a1d4ab5d03f1284b67883e8d87530, got [0-9a-f]{32}/);
    expect(err.message).toContain(goodMd5);
  });

  test('a truncated transfer is an error and leaves nothing behind', async () => {
    await expectFailure(`${base}/truncated.tar.gz`, goodMd5, /truncated/);
  });

  test('a server error is an error and leaves nothing behind', async () => {
    await expectFailure(`${base}/error`, goodMd5, /HTTP 500/);
  });

  test("an archive with a '../' entry is refused; nothing is written outside or left behind", async () => {
    await expectFailure(`${base}/dotdot.tar.gz`, md5s['dotdot.tar.gz'], /refused to extract .*entry "\.\.\/\.\.\/\.\.\/evil": its path contains '\.\.'/);
    expect(fs.existsSync(path.join(tmp, 'evil'))).toBe(false);
    expect(fs.existsSync(path.join(path.dirname(tmp), 'evil'))).toBe(false);
  });

  test('an archive with an absolute entry is refused', async () => {
    await expectFailure(`${base}/absolute.tar.gz`, md5s['absolute.tar.gz'], /refused to extract .*it has an absolute path/);
  });

  test('an archive with a symbolic link is refused', async () => {
    await expectFailure(`${base}/symlink.tar.gz`, md5s['symlink.tar.gz'], /refused to extract .*evil-link".*symbolic link \(to \.\.\/\.\.\/\.\.\/evil\)/);
  });

  test('an archive with a hard link is refused', async () => {
    await expectFailure(`${base}/hardlink.tar.gz`, md5s['hardlink.tar.gz'], /refused to extract .*hard link/);
  });

  test('a file that is not a tar.gz (with a matching MD5) is an error', async () => {
    await expectFailure(`${base}/garbage.tar.gz`, md5s['garbage.tar.gz'], /cannot extract cifar-10-binary\.tar\.gz \(truncated, damaged, or not a tar\.gz\): /);
  });

  test('an archive cut short (its MD5 matching) reports the truncation, once every write has stopped; nothing is left', async () => {
    for (const percent of CUTS) {
      const name = `cut-${percent}.tar.gz`;
      const err = await expectFailure(
        `${base}/${name}`,
        md5s[name],
        /cannot extract cifar-10-binary\.tar\.gz \(truncated, damaged, or not a tar\.gz\): .*(unexpected end of file|Truncated input)/,
      );
      expect(err.message).not.toMatch(/ENOTEMPTY|ENOENT/);
      fs.rmSync(path.join(tmp, 'data'), { recursive: true });
    }
  });

  test('a gzip bomb announcing a 2 GiB file is refused at its header by the default per-file limit', async () => {
    const err = await expectFailure(
      `${base}/bomb-2g.tar.gz`,
      md5s['bomb-2g.tar.gz'],
      /refused to extract cifar-10-binary\.tar\.gz: entry "cifar-10-batches-bin\/data_batch_1\.bin" is 2\.0 GiB, more than the 256 MiB allowed for one file/,
    );
    expect(err.message).toMatch(/limits: 1\.0 GiB in all \(XCEPTION_TORCH_CIFAR10_MAX_BYTES\), 256 MiB per file \(XCEPTION_TORCH_CIFAR10_MAX_ENTRY_BYTES\)/);
  });

  test('the limit on all files together (maxExtractBytes) refuses a bomb under tar\'s ratio guard', async () => {
    expect(fs.statSync(archives['/bomb-3m.tar.gz']).size).toBeLessThan(1024 ** 2); // the download itself is within the limit
    await expectFailure(`${base}/bomb-3m.tar.gz`, md5s['bomb-3m.tar.gz'], /refused to extract cifar-10-binary\.tar\.gz: it holds more than 1\.0 MiB in all/, {
      maxExtractBytes: 1024 ** 2,
    });
  });

  test('the limits come from XCEPTION_TORCH_CIFAR10_MAX_BYTES / _MAX_ENTRY_BYTES too; the download is held to the total', async () => {
    const gz = fs.statSync(archives['/good.tar.gz']).size;
    const extracted = (57 + 13) * 3073;
    expect(gz).toBeLessThan(extracted - 1000);
    const env = { XCEPTION_TORCH_CACHE: path.join(tmp, 'cache'), XCEPTION_TORCH_CIFAR10_URL: `${base}/good.tar.gz`, XCEPTION_TORCH_CIFAR10_MD5: goodMd5 };
    await expect(ensureCifar10({ env: { ...env, XCEPTION_TORCH_CIFAR10_MAX_BYTES: String(extracted - 1000) }, quiet: true })).rejects.toThrow(
      /refused to extract cifar-10-binary\.tar\.gz: it holds more than [\d.]+ KiB in all/,
    );
    await expect(ensureCifar10({ env: { ...env, XCEPTION_TORCH_CIFAR10_MAX_ENTRY_BYTES: '30000' }, quiet: true })).rejects.toThrow(
      /refused to extract cifar-10-binary\.tar\.gz: entry "cifar-10-batches-bin\/data_batch_1\.bin" is [\d.]+ KiB, more than the 29\.3 KiB allowed for one file/,
    );
    await expect(ensureCifar10({ env: { ...env, XCEPTION_TORCH_CIFAR10_MAX_BYTES: String(gz - 1) }, quiet: true })).rejects.toThrow(
      /refused: its size .* is more than the limit of/,
    );
    expect(listTree(tmp)).toEqual([]);
    for (const bad of ['0', '-5', '1e9', '2.5', 'lots']) {
      await expect(ensureCifar10({ env: { ...env, XCEPTION_TORCH_CIFAR10_MAX_BYTES: bad } })).rejects.toThrow(
        `CIFAR-10 maxExtractBytes must be a positive whole number of bytes, got "${bad}" (XCEPTION_TORCH_CIFAR10_MAX_BYTES or maxExtractBytes)`,
      );
    }
    await expect(ensureCifar10({ env, maxEntryBytes: 0 })).rejects.toThrow(/maxEntryBytes must be a positive whole number of bytes, got "0"/);
    expect(requests).toEqual(['/good.tar.gz', '/good.tar.gz', '/good.tar.gz']);
    // Limits large enough: the same archive goes in.
    expect(await ensureCifar10({ env: { ...env, XCEPTION_TORCH_CIFAR10_MAX_BYTES: String(extracted + 2000) }, quiet: true })).toBe(path.join(tmp, 'cache', CIFAR10_FOLDER));
  });

  test('an archive without all the batch files is an error', async () => {
    await expectFailure(`${base}/incomplete.tar.gz`, md5s['incomplete.tar.gz'], /the archive has no cifar-10-batches-bin\/test_batch\.bin/);
  });

  test('offline with no cached copy: where it looked, the URL, the reason and both ways forward', async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const url = `http://127.0.0.1:${port}/cifar-10-binary.tar.gz`;
    const cache = path.join(tmp, 'cache');
    const err = (await ensureCifar10({ env: { XCEPTION_TORCH_CACHE: cache, XCEPTION_TORCH_CIFAR10_URL: url }, quiet: true }).catch((e: Error) => e)) as Error;
    expect(err.message).toContain(`no CIFAR-10 in the cache (${path.join(cache, CIFAR10_FOLDER)})`);
    expect(err.message).toContain(`fetching ${url} failed`);
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(err.message).toMatch(/--data-dir DIR \(DIR holding cifar-10-batches-bin\/, or that folder itself/);
    expect(err.message).toContain('--dataset synthetic');
    expect(err.message).toMatch(/through a proxy, set HTTPS_PROXY \(and HTTP_PROXY\)/);
    expect(err.message.split('\n')).toHaveLength(1);
    expect(listTree(tmp)).toEqual([]);
  });

  test('the download goes through the proxy that the environment names', async () => {
    const serverPort = Number(new URL(base).port);
    const proxy = await startLoopbackProxy({ route: (host) => (host === 'cifar.invalid' ? serverPort : undefined) });
    try {
      const cache = path.join(tmp, 'cache');
      const env = { XCEPTION_TORCH_CACHE: cache, XCEPTION_TORCH_CIFAR10_URL: 'http://cifar.invalid/good.tar.gz', XCEPTION_TORCH_CIFAR10_MD5: goodMd5 };
      expect(await ensureCifar10({ env: { ...env, npm_config_proxy: proxy.url }, quiet: true })).toBe(path.join(cache, CIFAR10_FOLDER));
      expect(proxy.seen.map((r) => r.target)).toEqual(['http://cifar.invalid/good.tar.gz']);
      expect(requests).toEqual(['/good.tar.gz']);
    } finally {
      await proxy.close();
    }
  });

  test('the official URL and MD5 are the defaults', async () => {
    expect(CIFAR10_URL).toBe('https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz');
    expect(CIFAR10_MD5).toBe('c32a1d4ab5d03f1284b67883e8d87530');
    // A malformed MD5 override is refused before any download.
    await expect(ensureCifar10({ dataDir: path.join(tmp, 'd'), url: `${base}/good.tar.gz`, md5: 'xyz' })).rejects.toThrow(/MD5 must be 32 hex digits/);
    expect(requests).toEqual([]);
  });

  describe('xception-torch download (compiled CLI)', () => {
    function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
      // Asynchronous, so this process's loopback server can answer the child.
      return new Promise((resolve) => {
        execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' }, (error, stdout, stderr) => {
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
        });
      });
    }

    test('downloads into --data-dir with progress, then finds it in both --data-dir forms', async () => {
      const env = { XCEPTION_TORCH_CIFAR10_URL: `${base}/good.tar.gz`, XCEPTION_TORCH_CIFAR10_MD5: goodMd5, XCEPTION_TORCH_CACHE: path.join(tmp, 'cache') };
      const dataDir = path.join(tmp, 'data');
      const first = await cli(['download', '--data-dir', dataDir], env);
      expect(first.stderr).toContain('Downloading cifar-10-binary.tar.gz');
      expect(first.code).toBe(0);
      const folder = path.join(dataDir, CIFAR10_FOLDER);
      expect(first.stdout).toContain(`CIFAR-10 in ${folder}`);
      expect(first.stdout).toContain('train 57 images, test 13 images, 10 classes: disc, ring');
      expect(requests).toEqual(['/good.tar.gz']);

      for (const dir of [dataDir, folder]) {
        const again = await cli(['download', '--data-dir', dir, '--quiet'], env);
        expect(again.code).toBe(0);
        expect(again.stdout).toContain(`CIFAR-10 in ${folder}`);
        expect(again.stderr).toBe('');
      }
      expect(requests).toEqual(['/good.tar.gz']);
      expect(fs.existsSync(path.join(tmp, 'cache'))).toBe(false);
    });

    test('a failure is one error line and exit code 1', async () => {
      const r = await cli(['download', '--data-dir', path.join(tmp, 'data'), '--quiet'], {
        XCEPTION_TORCH_CIFAR10_URL: `${base}/good.tar.gz`,
        XCEPTION_TORCH_CIFAR10_MD5: '0'.repeat(32),
      });
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^xception-torch: error: CIFAR-10 is not available: .*md5 mismatch.*--data-dir DIR.*--dataset synthetic/);
      expect(listTree(tmp)).toEqual([]);
    });
  });
});
