// The HTTP side of a download (see download.ts): one GET over http or https, directly or through the
// proxy the environment names (proxy.ts), its redirects followed, bounded by an idle timer and the
// overall deadline; and the errors that say which of them failed and what to do.
import * as http from 'http';
import * as https from 'https';
import type { DownloadOptions } from './download';
import { DEADLINE_VARIABLE, formatDuration } from './download-deadline';
import { ProxyChoice, proxyAgent, proxyFor, proxyHint } from './proxy';
import { formatBytes } from './report/format';

const MAX_REDIRECTS = 5;
export const DEFAULT_TIMEOUT_MS = 15000;
const OFFLINE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ECONNREFUSED', 'ENETDOWN']);

/** A timer that fires after `ms` without a `bump()`. */
export class IdleTimer {
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
export interface Transfer {
  opts: DownloadOptions;
  timeoutMs: number;
  deadlineMs: number;
  /** Aborted when the overall deadline passes. */
  deadline: AbortSignal;
  env: NodeJS.ProcessEnv;
}

export interface Response {
  res: http.IncomingMessage;
  idle: IdleTimer;
}

export function offlineError(url: string, timeoutMs: number, detail: string): Error {
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

export function deadlineError(where: string, t: Transfer, received: number, total: number | undefined): Error {
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

/**
 * The response to `start` (a GET of `t.opts.url`), its redirects followed, and where it came from
 * for messages: the URL, the one it was redirected to, the proxy. Only a 2xx response is returned.
 */
export async function follow(t: Transfer, start: URL): Promise<Response & { where: string }> {
  const opts = t.opts;
  let url = start;
  let proxy: ProxyChoice | undefined;
  const where = (): string =>
    (url.href === new URL(opts.url).href ? opts.url : `${opts.url} (redirected to ${url.href})`) + via(proxy);

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
    return { res, idle, where: where() };
  }
}
