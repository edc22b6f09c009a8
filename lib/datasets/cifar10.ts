/**
 * CIFAR-10, binary version: download (checked against its MD5), safe extraction, parsing (the batch
 * and meta files, cifar10-batch.ts), splits.
 *
 * The data lives in `<cache>/cifar-10-batches-bin/` (`~/.cache/xception-torch` unless
 * `XCEPTION_TORCH_CACHE` or `XDG_CACHE_HOME` say otherwise) or in a folder the user names
 * (`dataDir`, `--data-dir`). A fetch happens in a temporary folder inside the target folder and ends
 * with one rename, so the target either has a complete `cifar-10-batches-bin/` or nothing new. The
 * archive may extract at most `maxExtractBytes` (1 GiB; CIFAR-10 is about 185 MB) and at most
 * `maxEntryBytes` per file (256 MiB), so an archive that is not CIFAR-10 cannot fill the disk.
 */
import * as fs from 'fs';
import * as path from 'path';
import { defaultCacheDir } from '../cache-dir';
import { download } from '../download';
import { formatBytes } from '../report/format';
import { extractTarGz } from '../extract-tar';
import { isDir, isFile } from '../file-kind';
import { isProcessAlive } from '../process-alive';
import { permutation } from '../random';
import { DatasetSplits, ImageSet } from './types';
import { parseCifar10Batch, parseCifar10Meta } from './cifar10-batch';

export {
  CIFAR10_CLASSES, CIFAR10_IMAGE_BYTES, CIFAR10_RECORD_BYTES, parseCifar10Batch, parseCifar10Meta,
} from './cifar10-batch';

export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
export const CIFAR10_ARCHIVE = 'cifar-10-binary.tar.gz';
/** The folder the archive unpacks to. */
export const CIFAR10_FOLDER = 'cifar-10-batches-bin';
export const CIFAR10_TRAIN_FILES: readonly string[] = [
  'data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin',
];
export const CIFAR10_TEST_FILE = 'test_batch.bin';
export const CIFAR10_META_FILE = 'batches.meta.txt';

const BATCH_FILES = [...CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE];
const ALL_FILES = [...BATCH_FILES, CIFAR10_META_FILE];
const WORK_PREFIX = '.cifar-10-download-';
/** Defaults of the extraction limits; the environment variables that override them. */
export const CIFAR10_MAX_EXTRACT_BYTES = 1024 ** 3;
export const CIFAR10_MAX_ENTRY_BYTES = 256 * 1024 ** 2;
const MAX_EXTRACT_VARIABLE = 'XCEPTION_TORCH_CIFAR10_MAX_BYTES';
const MAX_ENTRY_VARIABLE = 'XCEPTION_TORCH_CIFAR10_MAX_ENTRY_BYTES';

/** The sets one after another; they must share one image shape. */
export function concatImageSets(sets: readonly ImageSet[]): ImageSet {
  if (sets.length === 0) throw new Error('concatImageSets: no sets given');
  const { channels, height, width } = sets[0];
  const per = channels * height * width;
  for (const s of sets) {
    if (s.channels !== channels || s.height !== height || s.width !== width) {
      throw new Error(`concatImageSets: shapes differ (${channels}×${height}×${width} and ${s.channels}×${s.height}×${s.width})`);
    }
  }
  const count = sets.reduce((n, s) => n + s.count, 0);
  const images = new Uint8Array(count * per);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const s of sets) {
    images.set(s.images.subarray(0, s.count * per), at * per);
    labels.set(s.labels.subarray(0, s.count), at);
    at += s.count;
  }
  return { images, labels, count, channels, height, width };
}

/** The images at `indices`, in that order. */
export function selectImages(set: ImageSet, indices: ArrayLike<number>): ImageSet {
  const per = set.channels * set.height * set.width;
  const images = new Uint8Array(indices.length * per);
  const labels = new Uint8Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= set.count) throw new Error(`selectImages: index ${i} is outside 0..${set.count - 1}`);
    images.set(set.images.subarray(i * per, (i + 1) * per), k * per);
    labels[k] = set.labels[i];
  }
  return { images, labels, count: indices.length, channels: set.channels, height: set.height, width: set.width };
}

async function readRequired(dir: string, name: string): Promise<Buffer> {
  try {
    return await fs.promises.readFile(path.join(dir, name));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`CIFAR-10 file ${name} is missing from ${dir}`);
    throw new Error(`Cannot read CIFAR-10 file ${name} in ${dir}: ${(err as Error).message}`);
  }
}

/** Reads an extracted `cifar-10-batches-bin/` folder: the five train batches as one set, the test batch, the class names. */
export async function readCifar10Folder(dir: string): Promise<{ classNames: string[]; train: ImageSet; test: ImageSet }> {
  const folder = path.resolve(dir);
  if (!isDir(folder)) throw new Error(`CIFAR-10 folder ${folder} does not exist or is not a folder`);
  const train: ImageSet[] = [];
  for (const name of CIFAR10_TRAIN_FILES) {
    train.push(parseCifar10Batch(await readRequired(folder, name), path.join(folder, name)));
  }
  const test = parseCifar10Batch(await readRequired(folder, CIFAR10_TEST_FILE), path.join(folder, CIFAR10_TEST_FILE));
  const meta = await readRequired(folder, CIFAR10_META_FILE);
  const classNames = parseCifar10Meta(meta.toString('utf8'), path.join(folder, CIFAR10_META_FILE));
  return { classNames, train: concatImageSets(train), test };
}

/**
 * The `cifar-10-batches-bin` folder for a data folder given either as the folder that holds
 * `cifar-10-batches-bin/` or as that folder itself (recognised by its name or by CIFAR-10 files in
 * it); undefined when neither is there.
 */
export function resolveCifar10Dir(dataDir: string): string | undefined {
  const dir = path.resolve(dataDir);
  const inside = path.join(dir, CIFAR10_FOLDER);
  if (isDir(inside)) return inside;
  if (!isDir(dir)) return undefined;
  if (path.basename(dir) === CIFAR10_FOLDER || ALL_FILES.some((f) => fs.existsSync(path.join(dir, f)))) return dir;
  return undefined;
}

export interface EnsureCifar10Options {
  /**
   * Where the data is or goes: the folder holding `cifar-10-batches-bin/`, or that folder itself.
   * Default: the cache folder (`~/.cache/xception-torch`, see `defaultCacheDir`).
   */
  dataDir?: string;
  /** Where to download from. Default: `XCEPTION_TORCH_CIFAR10_URL`, else the dataset's home page. */
  url?: string;
  /**
   * The archive's expected MD5, always checked. Default: `XCEPTION_TORCH_CIFAR10_MD5`, else the
   * official archive's (`CIFAR10_MD5`). Only a mirror serving a different archive needs this.
   */
  md5?: string;
  /** No progress output. */
  quiet?: boolean;
  /** Give up after this long without download progress. */
  timeoutMs?: number;
  /** Give up after this long in all (default: `XCEPTION_TORCH_DOWNLOAD_DEADLINE` seconds, else 2 hours). */
  deadlineMs?: number;
  /**
   * The most bytes the archive may extract, all files together; the download is held to it too.
   * Default: `XCEPTION_TORCH_CIFAR10_MAX_BYTES`, else 1 GiB.
   */
  maxExtractBytes?: number;
  /** The most bytes one extracted file may have. Default: `XCEPTION_TORCH_CIFAR10_MAX_ENTRY_BYTES`, else 256 MiB. */
  maxEntryBytes?: number;
  /** Environment to read the cache folder and overrides from. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** The files of CIFAR-10 that are not in `folder` (a `cifar-10-batches-bin/`); empty when it is complete. */
export function missingCifar10Files(folder: string): string[] {
  return ALL_FILES.filter((f) => !isFile(path.join(folder, f)));
}

/** One line ending in a full stop. */
function sentence(message: string): string {
  const line = message.replace(/\s*\n\s*/g, ' ').trim();
  return /[.!?]$/.test(line) ? line : `${line}.`;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value.trim() !== '' ? value.trim() : undefined;
}

/** A byte limit: the option, else the environment variable (a whole number of bytes), else the default. */
function byteLimit(option: number | undefined, optionName: string, env: NodeJS.ProcessEnv, variable: string, fallback: number): number {
  const raw = option !== undefined ? String(option) : nonEmpty(env[variable]);
  if (raw === undefined) return fallback;
  const value = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new Error(`CIFAR-10 ${optionName} must be a positive whole number of bytes, got "${raw}" (${variable} or ${optionName})`);
  }
  return value;
}

/**
 * The `cifar-10-batches-bin` folder, downloading and extracting CIFAR-10 first when it is not there.
 *
 * Looks in `dataDir` if given (and downloads into it when absent), else in the cache folder. A second
 * call finds the folder and touches no network. Any failure leaves nothing behind and gives an error
 * that says where it looked, the URL it tried, why it failed and the ways forward.
 */
export async function ensureCifar10(opts: EnsureCifar10Options = {}): Promise<string> {
  const env = opts.env ?? process.env;
  const lookIn = opts.dataDir !== undefined ? path.resolve(opts.dataDir) : defaultCacheDir(env);
  const found = resolveCifar10Dir(lookIn);
  if (found) {
    const missing = missingCifar10Files(found);
    if (missing.length > 0) {
      throw new Error(
        `CIFAR-10 folder ${found} is incomplete: ${missing.join(', ')} missing. ` +
          `Restore the files, or delete the folder so it is downloaded again.`,
      );
    }
    return found;
  }

  // A data folder named like the batches folder itself downloads next to it, so the result is that folder.
  const target = opts.dataDir !== undefined && path.basename(lookIn) === CIFAR10_FOLDER ? path.dirname(lookIn) : lookIn;
  const url = nonEmpty(opts.url) ?? nonEmpty(env.XCEPTION_TORCH_CIFAR10_URL) ?? CIFAR10_URL;
  const md5 = (nonEmpty(opts.md5) ?? nonEmpty(env.XCEPTION_TORCH_CIFAR10_MD5) ?? CIFAR10_MD5).toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(md5)) throw new Error(`CIFAR-10 MD5 must be 32 hex digits, got "${md5}" (XCEPTION_TORCH_CIFAR10_MD5 or md5)`);
  const maxExtractBytes = byteLimit(opts.maxExtractBytes, 'maxExtractBytes', env, MAX_EXTRACT_VARIABLE, CIFAR10_MAX_EXTRACT_BYTES);
  const maxEntryBytes = byteLimit(opts.maxEntryBytes, 'maxEntryBytes', env, MAX_ENTRY_VARIABLE, CIFAR10_MAX_ENTRY_BYTES);

  try {
    return await fetchCifar10({
      url,
      md5,
      target,
      quiet: opts.quiet,
      timeoutMs: opts.timeoutMs,
      deadlineMs: opts.deadlineMs,
      env,
      maxExtractBytes,
      maxEntryBytes,
    });
  } catch (err) {
    const looked = opts.dataDir !== undefined
      ? `no CIFAR-10 in ${path.join(lookIn, CIFAR10_FOLDER)} or in ${lookIn} itself`
      : `no CIFAR-10 in the cache (${path.join(lookIn, CIFAR10_FOLDER)})`;
    throw new Error(
      `CIFAR-10 is not available: ${looked}, and fetching ${url} failed: ${sentence((err as Error).message)} ` +
        `Ways forward: download and extract ${CIFAR10_ARCHIVE} elsewhere and pass --data-dir DIR ` +
        `(DIR holding ${CIFAR10_FOLDER}/, or that folder itself; dataDir in the API), ` +
        `or use --dataset synthetic to run without CIFAR-10.`,
      { cause: err },
    );
  }
}

interface FetchOptions {
  url: string;
  md5: string;
  target: string;
  quiet?: boolean;
  timeoutMs?: number;
  deadlineMs?: number;
  env: NodeJS.ProcessEnv;
  maxExtractBytes: number;
  maxEntryBytes: number;
}

/** Removes work folders left by fetches whose process is gone (killed mid-download). */
async function removeStaleWork(target: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.promises.readdir(target);
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.startsWith(WORK_PREFIX) ? /^(\d+)-/.exec(name.slice(WORK_PREFIX.length)) : null;
    if (m && !isProcessAlive(Number(m[1]))) {
      await fs.promises.rm(path.join(target, name), { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

/** Removes the folders from `target` up to `created` (what mkdir created), as far as they are empty. */
async function removeCreatedDirs(target: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  for (let dir = target; ; dir = path.dirname(dir)) {
    try {
      await fs.promises.rmdir(dir);
    } catch {
      return;
    }
    if (dir === created || path.dirname(dir) === dir) return;
  }
}

async function fetchCifar10(opts: FetchOptions): Promise<string> {
  const created = await fs.promises.mkdir(opts.target, { recursive: true });
  try {
    await removeStaleWork(opts.target);
    const work = await fs.promises.mkdtemp(path.join(opts.target, `${WORK_PREFIX}${process.pid}-`));
    try {
      const archive = path.join(work, CIFAR10_ARCHIVE);
      await download({
        url: opts.url,
        dest: archive,
        md5: opts.md5,
        quiet: opts.quiet,
        timeoutMs: opts.timeoutMs,
        deadlineMs: opts.deadlineMs,
        maxBytes: opts.maxExtractBytes,
        env: opts.env,
        label: CIFAR10_ARCHIVE,
      });
      const unpacked = path.join(work, 'extracted');
      await extractTarGz(archive, unpacked, {
        limits: { maxTotalBytes: opts.maxExtractBytes, maxEntryBytes: opts.maxEntryBytes },
        limitHint: `limits: ${formatBytes(opts.maxExtractBytes)} in all (${MAX_EXTRACT_VARIABLE}), ${formatBytes(opts.maxEntryBytes)} per file (${MAX_ENTRY_VARIABLE})`,
      });
      await fs.promises.rm(archive, { force: true });
      const folder = path.join(unpacked, CIFAR10_FOLDER);
      const missing = missingCifar10Files(folder);
      if (missing.length > 0) {
        throw new Error(`the archive has no ${missing.map((f) => `${CIFAR10_FOLDER}/${f}`).join(', ')}`);
      }
      const dest = path.join(opts.target, CIFAR10_FOLDER);
      try {
        await fs.promises.rename(folder, dest);
      } catch (err) {
        // Another process may have put a complete copy there first; that one is as good.
        if (!(isDir(dest) && missingCifar10Files(dest).length === 0)) throw err;
      }
      return dest;
    } finally {
      await fs.promises.rm(work, { recursive: true, force: true });
    }
  } catch (err) {
    await removeCreatedDirs(opts.target, created);
    throw err;
  }
}

/** Splits a set into train and validation parts: a seeded permutation, the first `valSize` images to validation. */
export function splitTrainVal(set: ImageSet, valSize: number, seed: number): { train: ImageSet; val: ImageSet } {
  if (!Number.isInteger(valSize) || valSize < 0 || valSize >= set.count) {
    throw new Error(`valSize must be an integer from 0 to ${set.count - 1} (the set has ${set.count} images), got ${valSize}`);
  }
  const order = permutation(set.count, seed);
  // Each part keeps the original order, which is what a reader of the files would expect.
  const val = order.slice(0, valSize).sort();
  const train = order.slice(valSize).sort();
  return { train: selectImages(set, train), val: selectImages(set, val) };
}

export interface LoadCifar10Options extends EnsureCifar10Options {
  /** Images held out of the 50,000 training images for validation. Default 5,000. */
  valSize?: number;
  /** Seed of the train/validation split. Default 0. */
  seed?: number;
}

/** CIFAR-10 as train / validation / test (45,000 / 5,000 / 10,000 by default), fetched first if needed. */
export async function loadCifar10(opts: LoadCifar10Options = {}): Promise<DatasetSplits> {
  const folder = await ensureCifar10(opts);
  const { classNames, train, test } = await readCifar10Folder(folder);
  const split = splitTrainVal(train, opts.valSize ?? 5000, opts.seed ?? 0);
  return { name: 'cifar10', classNames, train: split.train, val: split.val, test };
}
