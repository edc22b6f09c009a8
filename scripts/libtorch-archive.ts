// Downloading a pinned libtorch build into the cache: the zip fetched and checked against its
// sha256, unpacked into a staging folder under a cap on its size, then moved into place whole.
import * as fs from 'fs';
import * as path from 'path';
import extract from 'extract-zip';
import { download } from '../lib/download';
import { isFile } from '../lib/file-kind';
import { formatBytes } from '../lib/report/format';
import type { LibtorchPin } from './libtorch-pins';
import { TORCH_CONFIG } from './libtorch-tree';

export interface ArchiveOptions {
  /** The cache the build is unpacked into (its folder: cacheFolder()). */
  cacheDir: string;
  /** Connect/idle timeout of the download. */
  timeoutMs: number;
  /** No download progress output. */
  quiet?: boolean;
  /** Most bytes the archive may unpack to; default $XCEPTION_TORCH_LIBTORCH_MAX_BYTES or 32 GiB. */
  maxExtractBytes?: number;
  env: NodeJS.ProcessEnv;
  log: (msg: string) => void;
}

/** The folder of `pin`'s build in the cache (the libtorch folder lies inside it). */
export function cacheFolder(cacheDir: string, pin: LibtorchPin): string {
  return path.join(cacheDir, `libtorch-${pin.version}-${pin.variant}`);
}

/** The cap on what the archive unpacks to: `configured`, else $XCEPTION_TORCH_LIBTORCH_MAX_BYTES, else 32 GiB. */
export function maxExtractBytes(configured: number | undefined, env: NodeJS.ProcessEnv): number {
  if (configured !== undefined) return configured;
  const text = env.XCEPTION_TORCH_LIBTORCH_MAX_BYTES;
  if (text === undefined || text === '') return 32 * 2 ** 30;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new Error(`XCEPTION_TORCH_LIBTORCH_MAX_BYTES must be a positive number of bytes; got ${JSON.stringify(text)}`);
  }
  return value;
}

/**
 * Downloads `pin` and unpacks it into its cache folder; resolves with the libtorch root inside it.
 * Rejects with why it failed (the download, the size cap, an archive without libtorch); the zip and
 * the staging folder are removed either way.
 */
export async function downloadLibtorch(pin: LibtorchPin, opts: ArchiveOptions): Promise<string> {
  const cacheDir = opts.cacheDir;
  const final = cacheFolder(cacheDir, pin);
  const zip = `${final}.${process.pid}.zip`;
  const staging = path.join(cacheDir, `.extract-${process.pid}-${Date.now()}`);
  opts.log(`downloading libtorch ${pin.version} (${pin.variant}) from ${pin.url} into ${cacheDir}`);
  try {
    fs.mkdirSync(cacheDir, { recursive: true });
    await download({
      url: pin.url,
      dest: zip,
      sha256: pin.sha256,
      timeoutMs: opts.timeoutMs,
      label: `libtorch ${pin.version} (${pin.variant})`,
      quiet: opts.quiet,
    });
    opts.log(`extracting ${path.basename(zip)}`);
    // The sizes the archive declares are summed before each entry is written: a zip bomb behind an
    // overridden checksum stops at the cap instead of filling the disk.
    const cap = maxExtractBytes(opts.maxExtractBytes, opts.env);
    let declared = 0;
    await extract(zip, {
      dir: staging,
      onEntry: (entry) => {
        declared += entry.uncompressedSize;
        if (declared > cap) {
          throw new Error(`the archive unpacks to more than ${formatBytes(cap)} (XCEPTION_TORCH_LIBTORCH_MAX_BYTES raises the limit)`);
        }
      },
    });
    if (!isFile(path.join(staging, 'libtorch', 'share', 'cmake', TORCH_CONFIG))) {
      throw new Error(`the archive has no libtorch/share/cmake/${TORCH_CONFIG.split(path.sep).join('/')}`);
    }
    try {
      fs.renameSync(staging, final);
    } catch (err) {
      // Another process may have finished the same download first: use its copy if it is whole.
      if (!isFile(path.join(final, 'libtorch', 'share', 'cmake', TORCH_CONFIG))) throw err;
    }
    return path.join(final, 'libtorch');
  } finally {
    // extract-zip has settled, so no write is still in flight; retries cover a slow filesystem.
    fs.rmSync(staging, { recursive: true, force: true, maxRetries: 5 });
    fs.rmSync(zip, { force: true });
  }
}
