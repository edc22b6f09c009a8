/**
 * The project's one downloader, used for libtorch and for datasets.
 *
 * A download streams into `<dest>.partial-<pid>` next to `dest` while the checksums are computed on
 * the fly; only a complete, verified file is renamed into place, so `dest` either does not exist or
 * is whole. The temporary file is removed on every failure, once its writer has closed it.
 *
 * Two clocks bound a download: an idle timeout (no progress for `timeoutMs`) and an overall deadline
 * (`deadlineMs`, else `XCEPTION_TORCH_DOWNLOAD_DEADLINE` seconds, else 2 hours), so a server that
 * drips a byte now and then fails too. Proxies come from the environment (see proxy.ts).
 *
 * The parts: download-http.ts (the requests, redirects, proxies and timers), download-body.ts (the
 * body into the temporary file: size limit, checksums), download-progress.ts, download-deadline.ts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { receiveBody } from './download-body';
import { deadlineOf } from './download-deadline';
import { DEFAULT_TIMEOUT_MS, follow, Transfer } from './download-http';
import { formatBytes } from './report/format';

export { formatBytes };
export { DEADLINE_VARIABLE, deadlineOf, formatDuration } from './download-deadline';

export interface DownloadOptions {
  url: string;
  dest: string;
  /** Expected SHA-256 of the file, hex. */
  sha256?: string;
  /** Expected MD5 of the file, hex. */
  md5?: string;
  /** Connect/idle timeout in milliseconds: how long without any progress before giving up. */
  timeoutMs?: number;
  /**
   * Overall deadline in milliseconds, redirects included. Default: `XCEPTION_TORCH_DOWNLOAD_DEADLINE`
   * (seconds), else 2 hours.
   */
  deadlineMs?: number;
  /** The most bytes the file may have: a larger Content-Length is refused up front, a longer body is cut off. */
  maxBytes?: number;
  /** Where proxy settings and the deadline variable are read. Default: `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Name shown in progress output; defaults to the file name in the URL. */
  label?: string;
  /** No progress output at all. */
  quiet?: boolean;
  /** Called for every chunk received. */
  onProgress?: (received: number, total: number | undefined) => void;
}

export async function download(opts: DownloadOptions): Promise<void> {
  const dest = path.resolve(opts.dest);
  const tmp = `${dest}.partial-${process.pid}`;
  const deadlineMs = deadlineOf(opts);
  if (opts.maxBytes !== undefined && !(Number.isSafeInteger(opts.maxBytes) && opts.maxBytes > 0)) {
    throw new Error(`maxBytes must be a positive whole number, got ${opts.maxBytes}`);
  }
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  try {
    await fetchToFile(opts, tmp, deadlineMs);
    await fs.promises.rename(tmp, dest);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

async function fetchToFile(opts: DownloadOptions, tmp: string, deadlineMs: number): Promise<void> {
  // Parsed before the deadline's timer starts: a bad URL must not leave it keeping the process alive.
  const start = new URL(opts.url);
  const controller = new AbortController();
  // setTimeout fires at once beyond 2^31 - 1 ms (24.8 days); a longer deadline is as good as none.
  const timer = setTimeout(() => controller.abort(), Math.min(deadlineMs, 2 ** 31 - 1));
  const t: Transfer = {
    opts,
    timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    deadlineMs,
    deadline: controller.signal,
    env: opts.env ?? process.env,
  };
  try {
    const { res, idle, where } = await follow(t, start);
    await receiveBody(t, res, idle, tmp, where);
  } finally {
    clearTimeout(timer);
  }
}
