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
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as path from 'path';
import { Transform } from 'stream';
import { pipeline } from 'stream/promises';
import { SingleBar } from 'cli-progress';
import { ProxyChoice, proxyAgent, proxyFor, proxyHint } from './proxy';
import { formatBytes } from './report/format';

export { formatBytes };

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

const MAX_REDIRECTS = 5;
const DEFAULT_TIMEOUT_MS = 15000;
const DEFAULT_DEADLINE_MS = 2 * 60 * 60 * 1000;
/** Environment variable: the overall deadline of a download, in seconds. */
export const DEADLINE_VARIABLE = 'XCEPTION_TORCH_DOWNLOAD_DEADLINE';
/** Without a Content-Length, a plain progress line every this many bytes. */
const UNKNOWN_TOTAL_STEP = 16 * 1024 * 1024;
const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNREFUSED', 'ENETDOWN']);


/** `600` → `"0.6 s"`, `5400000` → `"1.5 h"`. */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${Math.round(s * 10) / 10} s`;
  if (s < 3600) return `${Math.round((s / 60) * 10) / 10} min`;
  return `${Math.round((s / 3600) * 10) / 10} h`;
}

/** The overall deadline in milliseconds: the option, else the environment variable (seconds), else 2 hours. */
export function deadlineOf(opts: Pick<DownloadOptions, 'deadlineMs' | 'env'>): number {
  if (opts.deadlineMs !== undefined) {
    if (!(Number.isFinite(opts.deadlineMs) && opts.deadlineMs > 0)) {
      throw new Error(`deadlineMs must be a positive number of milliseconds, got ${opts.deadlineMs}`);
    }
    return opts.deadlineMs;
  }
  const raw = (opts.env ?? process.env)[DEADLINE_VARIABLE]?.trim();
  if (raw === undefined || raw === '') return DEFAULT_DEADLINE_MS;
  const seconds = Number(raw);
  if (!(Number.isFinite(seconds) && seconds > 0)) {
    throw new Error(`${DEADLINE_VARIABLE} must be a positive number of seconds, got "${raw}"`);
  }
  return seconds * 1000;
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

/** One download's settings and clocks, shared by its requests. */
interface Transfer {
  opts: DownloadOptions;
  timeoutMs: number;
  deadlineMs: number;
  /** Aborted when the overall deadline passes. */
  deadline: AbortSignal;
  env: NodeJS.ProcessEnv;
}

interface Response {
  res: http.IncomingMessage;
  idle: IdleTimer;
}

function offlineError(url: string, timeoutMs: number, detail: string): Error {
  return new Error(
    `Download of ${url} ${detail}: the network looks offline or the host is unreachable ` +
      `(timeout ${Math.round(timeoutMs / 100) / 10} s without progress). ${proxyHint()}`,
  );
}

function proxyUnreachable(url: string, proxy: ProxyChoice, detail: string): Error {
  return new Error(
    `Download of ${url} failed: cannot reach the proxy ${proxy.shown} (from ${proxy.variable}): ${detail}. ` +
      `Check ${proxy.variable}, or list the host in NO_PROXY to connect directly.`,
  );
}

function deadlineError(where: string, t: Transfer, received: number, total: number | undefined): Error {
  const seconds = Math.max(t.deadlineMs / 1000, 1e-3);
  const got = total === undefined ? formatBytes(received) : `${formatBytes(received)} of ${formatBytes(total)}`;
  return new Error(
    `Download of ${where} did not finish within its deadline of ${formatDuration(t.deadlineMs)} ` +
      `(received ${got}, ${formatBytes(received / seconds)}/s on average): the server or the connection is too slow. ` +
      `${DEADLINE_VARIABLE}=SECONDS allows longer.`,
  );
}

/** " through the proxy X (from VAR)", or nothing for a direct connection. */
function via(proxy: ProxyChoice | undefined): string {
  return proxy ? ` through the proxy ${proxy.shown} (from ${proxy.variable})` : '';
}

function request(url: URL, t: Transfer, proxy: ProxyChoice | undefined): Promise<Response> {
  const originalUrl = t.opts.url;
  return new Promise((resolve, reject) => {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      reject(new Error(`Cannot download ${originalUrl}: unsupported protocol ${url.protocol}`));
      return;
    }
    const get = url.protocol === 'https:' ? https.get : http.get;
    const req = get(url, {
      headers: { 'User-Agent': 'xception-torch', 'Accept-Encoding': 'identity' },
      agent: proxy ? proxyAgent(url, proxy) : undefined,
      signal: t.deadline,
    });
    const idle = new IdleTimer(t.timeoutMs, () => req.destroy(new Error('idle timeout')));
    idle.start();
    req.on('response', (res) => {
      idle.bump();
      resolve({ res, idle });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      idle.stop();
      if (t.deadline.aborted) {
        reject(deadlineError(`${originalUrl}${via(proxy)}`, t, 0, undefined));
      } else if (idle.fired) {
        reject(offlineError(`${originalUrl}${via(proxy)}`, t.timeoutMs, 'timed out'));
      } else if (err.code && OFFLINE_CODES.has(err.code)) {
        reject(proxy ? proxyUnreachable(originalUrl, proxy, err.code) : offlineError(originalUrl, t.timeoutMs, `failed (${err.code})`));
      } else {
        reject(new Error(`Download of ${originalUrl}${via(proxy)} failed: ${err.message}`));
      }
    });
  });
}

async function fetchToFile(opts: DownloadOptions, tmp: string, deadlineMs: number): Promise<void> {
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
  let url = new URL(opts.url);
  let proxy: ProxyChoice | undefined;
  const where = (): string =>
    (url.href === new URL(opts.url).href ? opts.url : `${opts.url} (redirected to ${url.href})`) + via(proxy);

  try {
    for (let hops = 0; ; hops++) {
      try {
        proxy = proxyFor(url, t.env);
      } catch (err) {
        throw new Error(`Cannot download ${opts.url}: ${(err as Error).message}`);
      }
      const { res, idle } = await request(url, t, proxy);
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
      await receiveBody(t, res, idle, tmp, where());
      return;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `stream` has closed its file (at once if it already has). */
function closed(stream: fs.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) resolve();
    else stream.once('close', () => resolve());
  });
}

async function receiveBody(t: Transfer, res: http.IncomingMessage, idle: IdleTimer, tmp: string, where: string): Promise<void> {
  const opts = t.opts;
  const lengthHeader = res.headers['content-length'];
  const total = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const maxBytes = opts.maxBytes;
  const tooBig = (size: string): Error =>
    new Error(`Download of ${where} refused: ${size} is more than the limit of ${formatBytes(maxBytes ?? 0)} for this file.`);
  if (maxBytes !== undefined && total !== undefined && total > maxBytes) {
    idle.stop();
    res.destroy();
    throw tooBig(`its size ${formatBytes(total)} (${total} bytes)`);
  }
  const sha256 = opts.sha256 ? crypto.createHash('sha256') : undefined;
  const md5 = opts.md5 ? crypto.createHash('md5') : undefined;
  const progress = new Progress(opts, total);
  let received = 0;
  let overLimit = false;

  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (maxBytes !== undefined && received > maxBytes) {
        overLimit = true;
        callback(new Error('over the size limit'));
        return;
      }
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
  const file = fs.createWriteStream(tmp);
  try {
    try {
      await pipeline(res, meter, file, { signal: t.deadline });
    } catch (err) {
      if (t.deadline.aborted) throw deadlineError(where, t, received, total);
      if (idle.fired) throw offlineError(where, t.timeoutMs, `timed out after ${formatBytes(received)}`);
      if (overLimit) throw tooBig(`the body, at ${formatBytes(received)} so far,`);
      if (total !== undefined && received < total) throw truncated();
      throw new Error(`Download of ${where} failed after ${formatBytes(received)}: ${(err as Error).message}`);
    } finally {
      // The caller removes the temporary file: only once nothing can write to it any more.
      await closed(file);
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
