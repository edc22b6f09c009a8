/**
 * The project's one downloader, used for libtorch and for datasets.
 *
 * A download streams into `<dest>.partial-<pid>` next to `dest` while the checksums are computed on
 * the fly; only a complete, verified file is renamed into place, so `dest` either does not exist or
 * is whole. The temporary file is removed on every failure.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { Transform } from 'stream';
import { pipeline } from 'stream/promises';
import { SingleBar } from 'cli-progress';

export interface DownloadOptions {
  url: string;
  dest: string;
  /** Expected SHA-256 of the file, hex. */
  sha256?: string;
  /** Expected MD5 of the file, hex. */
  md5?: string;
  /** Connect/idle timeout in milliseconds: how long without any progress before giving up. */
  timeoutMs?: number;
  /** Name shown in progress output; defaults to the file name in the URL. */
  label?: string;
  /** No progress output at all. */
  quiet?: boolean;
  /** Called for every chunk received. */
  onProgress?: (received: number, total: number | undefined) => void;
}

const MAX_REDIRECTS = 5;
const DEFAULT_TIMEOUT_MS = 15000;
/** Without a Content-Length, a plain progress line every this many bytes. */
const UNKNOWN_TOTAL_STEP = 16 * 1024 * 1024;
const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNREFUSED', 'ENETDOWN']);

/** `1536` → `"1.5 KiB"`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '? B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const sign = n < 0 ? '-' : '';
  if (unit === 0) return `${sign}${value} B`;
  return `${sign}${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export async function download(opts: DownloadOptions): Promise<void> {
  const dest = path.resolve(opts.dest);
  const tmp = `${dest}.partial-${process.pid}`;
  await fs.promises.mkdir(path.dirname(dest), { recursive: true });
  try {
    await fetchToFile(opts, tmp);
    await fs.promises.rename(tmp, dest);
  } catch (err) {
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** A timer that fires after `ms` without a `bump()`. */
class IdleTimer {
  private timer: NodeJS.Timeout | undefined;
  fired = false;

  constructor(private readonly ms: number, private readonly onFire: () => void) {}

  start(): void {
    this.timer = setTimeout(() => {
      this.fired = true;
      this.onFire();
    }, this.ms);
  }

  bump(): void {
    this.timer?.refresh();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

interface Response {
  res: http.IncomingMessage;
  idle: IdleTimer;
}

function offlineError(url: string, timeoutMs: number, detail: string): Error {
  return new Error(
    `Download of ${url} ${detail}: the network looks offline or the host is unreachable ` +
      `(timeout ${Math.round(timeoutMs / 100) / 10} s without progress).`,
  );
}

function request(url: URL, timeoutMs: number, originalUrl: string): Promise<Response> {
  return new Promise((resolve, reject) => {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      reject(new Error(`Cannot download ${originalUrl}: unsupported protocol ${url.protocol}`));
      return;
    }
    const get = url.protocol === 'https:' ? https.get : http.get;
    const req = get(url, { headers: { 'User-Agent': 'xception-torch', 'Accept-Encoding': 'identity' } });
    const idle = new IdleTimer(timeoutMs, () => req.destroy(new Error('idle timeout')));
    idle.start();
    req.on('response', (res) => {
      idle.bump();
      resolve({ res, idle });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      idle.stop();
      if (idle.fired) {
        reject(offlineError(originalUrl, timeoutMs, 'timed out'));
      } else if (err.code && OFFLINE_CODES.has(err.code)) {
        reject(offlineError(originalUrl, timeoutMs, `failed (${err.code})`));
      } else {
        reject(new Error(`Download of ${originalUrl} failed: ${err.message}`));
      }
    });
  });
}

async function fetchToFile(opts: DownloadOptions, tmp: string): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let url = new URL(opts.url);
  const where = (): string => (url.href === new URL(opts.url).href ? opts.url : `${opts.url} (redirected to ${url.href})`);

  for (let hops = 0; ; hops++) {
    const { res, idle } = await request(url, timeoutMs, opts.url);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      idle.stop();
      res.resume();
      if (hops >= MAX_REDIRECTS) throw new Error(`Download of ${opts.url} failed: more than ${MAX_REDIRECTS} redirects`);
      url = new URL(res.headers.location, url);
      continue;
    }
    if (status < 200 || status >= 300) {
      idle.stop();
      res.resume();
      throw new Error(`Download of ${where()} failed: HTTP ${status} ${res.statusMessage ?? ''}`.trimEnd());
    }
    await receiveBody(opts, res, idle, tmp, where(), timeoutMs);
    return;
  }
}

async function receiveBody(
  opts: DownloadOptions,
  res: http.IncomingMessage,
  idle: IdleTimer,
  tmp: string,
  where: string,
  timeoutMs: number,
): Promise<void> {
  const lengthHeader = res.headers['content-length'];
  const total = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const sha256 = opts.sha256 ? crypto.createHash('sha256') : undefined;
  const md5 = opts.md5 ? crypto.createHash('md5') : undefined;
  const progress = new Progress(opts, total);
  let received = 0;

  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      idle.bump();
      sha256?.update(chunk);
      md5?.update(chunk);
      progress.update(received);
      opts.onProgress?.(received, total);
      callback(null, chunk);
    },
  });

  const truncated = (): Error =>
    new Error(
      `Download of ${where} was truncated: received ${received} of ${total} bytes ` +
        `(${formatBytes(received)} of ${formatBytes(total ?? 0)}). Try again.`,
    );

  progress.start();
  let ok = false;
  try {
    try {
      await pipeline(res, meter, fs.createWriteStream(tmp));
    } catch (err) {
      if (idle.fired) throw offlineError(where, timeoutMs, `timed out after ${formatBytes(received)}`);
      if (total !== undefined && received < total) throw truncated();
      throw new Error(`Download of ${where} failed after ${formatBytes(received)}: ${(err as Error).message}`);
    }
    if (total !== undefined && received !== total) throw truncated();
    for (const [name, hash, expected] of [
      ['sha256', sha256, opts.sha256],
      ['md5', md5, opts.md5],
    ] as const) {
      if (!hash || !expected) continue;
      const actual = hash.digest('hex');
      if (actual !== expected.trim().toLowerCase()) {
        throw new Error(`${name} mismatch for ${where}: expected ${expected.trim().toLowerCase()}, got ${actual}. The file was discarded.`);
      }
    }
    ok = true;
  } finally {
    idle.stop();
    progress.finish(ok, received);
  }
}

function fileNameOf(url: string): string {
  const base = path.posix.basename(new URL(url).pathname);
  try {
    return decodeURIComponent(base) || url;
  } catch {
    return base || url;
  }
}

/** A progress bar on a terminal, a line every ~10% otherwise, or nothing when quiet. */
class Progress {
  private readonly label: string;
  private readonly mode: 'bar' | 'lines' | 'none';
  private bar: SingleBar | undefined;
  private startedAt = 0;
  private nextLine = 0;

  constructor(private readonly opts: DownloadOptions, private readonly total: number | undefined) {
    this.label = opts.label ?? fileNameOf(opts.url);
    this.mode = opts.quiet ? 'none' : process.stderr.isTTY ? 'bar' : 'lines';
  }

  private speed(received: number): string {
    const seconds = Math.max((Date.now() - this.startedAt) / 1000, 1e-3);
    return `${formatBytes(received / seconds)}/s`;
  }

  private payload(received: number): Record<string, string> {
    return {
      label: this.label,
      received: formatBytes(received),
      size: this.total === undefined ? '?' : formatBytes(this.total),
      speed: this.speed(received),
    };
  }

  start(): void {
    this.startedAt = Date.now();
    if (this.mode === 'bar') {
      const known = this.total !== undefined && this.total > 0;
      this.bar = new SingleBar({
        stream: process.stderr,
        format: known
          ? '{label} [{bar}] {percentage}% | {received} / {size} | {speed} | ETA {eta_formatted}'
          : '{label} {received} | {speed}',
        barCompleteChar: '#',
        barIncompleteChar: '-',
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      });
      this.bar.start(known ? (this.total as number) : 1, 0, this.payload(0));
    } else if (this.mode === 'lines') {
      const size = this.total === undefined ? 'unknown size' : formatBytes(this.total);
      process.stderr.write(`Downloading ${this.label} (${size}) from ${this.opts.url}\n`);
      this.nextLine = this.total === undefined ? UNKNOWN_TOTAL_STEP : 0.1;
    }
  }

  update(received: number): void {
    if (this.mode === 'bar' && this.bar) {
      const known = this.total !== undefined && this.total > 0;
      this.bar.update(known ? Math.min(received, this.total as number) : 0, this.payload(received));
    } else if (this.mode === 'lines') {
      if (this.total !== undefined && this.total > 0) {
        const fraction = received / this.total;
        if (fraction >= this.nextLine && fraction < 1) {
          process.stderr.write(
            `  ${this.label}: ${Math.floor(fraction * 100)}% (${formatBytes(received)} of ${formatBytes(this.total)}, ${this.speed(received)})\n`,
          );
          while (this.nextLine <= fraction) this.nextLine += 0.1;
        }
      } else if (this.total === undefined && received >= this.nextLine) {
        process.stderr.write(`  ${this.label}: ${formatBytes(received)} (${this.speed(received)})\n`);
        while (this.nextLine <= received) this.nextLine += UNKNOWN_TOTAL_STEP;
      }
    }
  }

  finish(ok: boolean, received: number): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
    if (this.mode === 'lines') {
      process.stderr.write(
        ok
          ? `  ${this.label}: done, ${formatBytes(received)} (${this.speed(received)})\n`
          : `  ${this.label}: failed after ${formatBytes(received)}\n`,
      );
    }
  }
}
