import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { execFile } from 'child_process';
import { deadlineOf, download, formatBytes, formatDuration } from '../lib/download';
import { clearProxyVariables, freePort, LoopbackProxy, startLoopbackProxy } from './helpers/proxy-server';

clearProxyVariables();

const BODY = crypto.randomBytes(256 * 1024 + 17);
const SHA256 = crypto.createHash('sha256').update(BODY).digest('hex');
const MD5 = crypto.createHash('md5').update(BODY).digest('hex');

let server: http.Server;
let base: string;
let port: number;
let tmp: string;
const requests: string[] = [];
const drips = new Set<NodeJS.Timeout>();

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests.push(req.url ?? '');
    switch (req.url) {
      case '/file.bin':
        res.writeHead(200, { 'Content-Length': BODY.length, 'Content-Type': 'application/octet-stream' });
        // Several chunks, so progress is reported more than once.
        for (let i = 0; i < BODY.length; i += 32 * 1024) res.write(BODY.subarray(i, i + 32 * 1024));
        res.end();
        return;
      case '/chunked.bin':
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
        res.end(BODY);
        return;
      case '/redirect':
        res.writeHead(302, { Location: '/redirect2' });
        res.end();
        return;
      case '/redirect2':
        res.writeHead(301, { Location: `${base}/file.bin` });
        res.end();
        return;
      case '/loop':
        res.writeHead(302, { Location: '/loop' });
        res.end();
        return;
      case '/truncated':
        res.writeHead(200, { 'Content-Length': BODY.length });
        res.write(BODY.subarray(0, 1000), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      case '/error':
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('boom');
        return;
      case '/hang':
        return; // never answers
      case '/stall':
        res.writeHead(200, { 'Content-Length': BODY.length });
        res.write(BODY.subarray(0, 1000)); // then nothing more
        return;
      case '/drip': {
        // One byte every 50 ms: never idle, never done.
        res.writeHead(200, { 'Content-Length': BODY.length });
        let at = 0;
        const timer = setInterval(() => res.write(BODY.subarray(at, ++at)), 50);
        drips.add(timer);
        res.on('close', () => {
          clearInterval(timer);
          drips.delete(timer);
        });
        return;
      }
      default:
        res.writeHead(404);
        res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  for (const timer of drips) clearInterval(timer);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-download-'));
  requests.length = 0;
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('download', () => {
  test('a malformed URL fails at once and starts no deadline timer (it would keep the process alive for hours)', async () => {
    // The deadline's timer is the one set with this (unusual) delay.
    const deadlineMs = 123_457;
    const setTimeoutSpy = jest.spyOn(global, 'setTimeout');
    try {
      await expect(download({ url: 'not a url', dest: path.join(tmp, 'never.bin'), quiet: true, deadlineMs })).rejects.toThrow(/Invalid URL/);
      expect(setTimeoutSpy.mock.calls.filter((call) => call[1] === deadlineMs)).toEqual([]);
    } finally {
      setTimeoutSpy.mockRestore();
    }
    expect(fs.existsSync(path.join(tmp, 'never.bin'))).toBe(false);
  });

  test('downloads a file and verifies sha256 and md5', async () => {
    const dest = path.join(tmp, 'sub', 'file.bin');
    const seen: Array<[number, number | undefined]> = [];
    await download({
      url: `${base}/file.bin`,
      dest,
      sha256: SHA256,
      md5: MD5.toUpperCase(),
      quiet: true,
      onProgress: (r, t) => seen.push([r, t]),
    });
    expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
    expect(fs.readdirSync(path.dirname(dest))).toEqual(['file.bin']);
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[seen.length - 1]).toEqual([BODY.length, BODY.length]);
  });

  test('downloads without Content-Length', async () => {
    const dest = path.join(tmp, 'chunked.bin');
    let lastTotal: number | undefined = -1;
    await download({ url: `${base}/chunked.bin`, dest, sha256: SHA256, quiet: true, onProgress: (_r, t) => (lastTotal = t) });
    expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
    expect(lastTotal).toBeUndefined();
  });

  test('replaces an existing file atomically', async () => {
    const dest = path.join(tmp, 'file.bin');
    fs.writeFileSync(dest, 'old');
    await download({ url: `${base}/file.bin`, dest, quiet: true });
    expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
  });

  test('wrong sha256 throws and leaves nothing behind', async () => {
    const dest = path.join(tmp, 'file.bin');
    const wrong = '0'.repeat(64);
    const err = await download({ url: `${base}/file.bin`, dest, sha256: wrong, quiet: true }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(wrong);
    expect((err as Error).message).toContain(SHA256);
    expect((err as Error).message).toContain(`${base}/file.bin`);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('wrong md5 throws and leaves nothing behind', async () => {
    const dest = path.join(tmp, 'file.bin');
    await expect(download({ url: `${base}/file.bin`, dest, sha256: SHA256, md5: 'f'.repeat(32), quiet: true })).rejects.toThrow(
      /md5 mismatch.*expected f{32}, got [0-9a-f]{32}/,
    );
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('a truncated transfer throws and leaves nothing behind', async () => {
    const dest = path.join(tmp, 'file.bin');
    await expect(download({ url: `${base}/truncated`, dest, quiet: true })).rejects.toThrow(
      new RegExp(`truncated.*received 1000 of ${BODY.length} bytes`),
    );
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('HTTP 500 throws with the status and the URL', async () => {
    const dest = path.join(tmp, 'file.bin');
    const err = await download({ url: `${base}/error`, dest, quiet: true }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/HTTP 500/);
    expect((err as Error).message).toContain(`${base}/error`);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('follows redirects (relative and absolute)', async () => {
    const dest = path.join(tmp, 'file.bin');
    await download({ url: `${base}/redirect`, dest, sha256: SHA256, quiet: true });
    expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
    expect(requests).toEqual(['/redirect', '/redirect2', '/file.bin']);
  });

  test('gives up after 5 redirects', async () => {
    await expect(download({ url: `${base}/loop`, dest: path.join(tmp, 'f'), quiet: true })).rejects.toThrow(/more than 5 redirects/);
    expect(requests.length).toBe(6);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('times out when the server never answers', async () => {
    const dest = path.join(tmp, 'file.bin');
    const started = Date.now();
    const err = await download({ url: `${base}/hang`, dest, timeoutMs: 300, quiet: true }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/offline/);
    expect((err as Error).message).toContain(`${base}/hang`);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('times out when the body stalls', async () => {
    const dest = path.join(tmp, 'file.bin');
    await expect(download({ url: `${base}/stall`, dest, timeoutMs: 300, quiet: true })).rejects.toThrow(/offline/);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('a server that drips bytes fails at the overall deadline, with what it received', async () => {
    const dest = path.join(tmp, 'file.bin');
    const started = Date.now();
    const err = (await download({ url: `${base}/drip`, dest, timeoutMs: 2000, deadlineMs: 700, quiet: true, env: {} }).catch((e: Error) => e)) as Error;
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toMatch(/did not finish within its deadline of 0\.7 s \(received \d+ B of 256 KiB, [\d.]+ B\/s on average\)/);
    expect(err.message).toContain(`${base}/drip`);
    expect(err.message).toContain('XCEPTION_TORCH_DOWNLOAD_DEADLINE=SECONDS');
    expect(took).toBeGreaterThanOrEqual(650);
    expect(took).toBeLessThan(3000);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('the deadline covers a server that never answers, and comes from XCEPTION_TORCH_DOWNLOAD_DEADLINE', async () => {
    const started = Date.now();
    const env = { XCEPTION_TORCH_DOWNLOAD_DEADLINE: '0.4' };
    await expect(download({ url: `${base}/hang`, dest: path.join(tmp, 'f'), timeoutMs: 5000, quiet: true, env })).rejects.toThrow(
      /did not finish within its deadline of 0\.4 s/,
    );
    expect(Date.now() - started).toBeLessThan(3000);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('the deadline: option, then environment, then 2 hours; bad values are refused before any request', async () => {
    expect(deadlineOf({ deadlineMs: 1500, env: { XCEPTION_TORCH_DOWNLOAD_DEADLINE: '9' } })).toBe(1500);
    expect(deadlineOf({ env: { XCEPTION_TORCH_DOWNLOAD_DEADLINE: '90' } })).toBe(90_000);
    expect(deadlineOf({ env: {} })).toBe(2 * 3600 * 1000);
    expect(formatDuration(2 * 3600 * 1000)).toBe('2 h');
    expect(formatDuration(90_000)).toBe('1.5 min');
    for (const bad of ['0', '-3', 'soon', 'Infinity']) {
      await expect(download({ url: `${base}/file.bin`, dest: path.join(tmp, 'f'), quiet: true, env: { XCEPTION_TORCH_DOWNLOAD_DEADLINE: bad } })).rejects.toThrow(
        `XCEPTION_TORCH_DOWNLOAD_DEADLINE must be a positive number of seconds, got "${bad}"`,
      );
    }
    await expect(download({ url: `${base}/file.bin`, dest: path.join(tmp, 'f'), quiet: true, deadlineMs: 0 })).rejects.toThrow(/deadlineMs must be a positive/);
    expect(requests).toEqual([]);
    // A deadline beyond what a timer can hold is no deadline, not an immediate one.
    await download({ url: `${base}/file.bin`, dest: path.join(tmp, 'f'), quiet: true, env: { XCEPTION_TORCH_DOWNLOAD_DEADLINE: '1e12' } });
    expect(fs.readFileSync(path.join(tmp, 'f')).equals(BODY)).toBe(true);
  });

  test('maxBytes refuses a larger Content-Length up front and cuts off a longer body', async () => {
    const dest = path.join(tmp, 'file.bin');
    await expect(download({ url: `${base}/file.bin`, dest, maxBytes: 100_000, quiet: true, env: {} })).rejects.toThrow(
      /refused: its size 256 KiB \(262161 bytes\) is more than the limit of 97\.7 KiB/,
    );
    expect(fs.readdirSync(tmp)).toEqual([]);
    // No Content-Length: the body itself is counted.
    await expect(download({ url: `${base}/chunked.bin`, dest, maxBytes: 100_000, quiet: true, env: {} })).rejects.toThrow(
      /refused: the body, at [\d.]+ KiB so far, is more than the limit of 97\.7 KiB/,
    );
    expect(fs.readdirSync(tmp)).toEqual([]);
    await download({ url: `${base}/file.bin`, dest, maxBytes: BODY.length, sha256: SHA256, quiet: true, env: {} });
    expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
  });

  test('connection refused reads as offline', async () => {
    // A port that was just free: bind, note it, close.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const err = (await download({ url: `http://127.0.0.1:${port}/x`, dest: path.join(tmp, 'x'), quiet: true, env: {} }).catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/ECONNREFUSED.*offline/);
    // The way forward behind a proxy is named.
    expect(err.message).toMatch(/through a proxy, set HTTPS_PROXY \(and HTTP_PROXY\).*NO_PROXY.*npm's https-proxy \/ proxy \/ noproxy config/);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('prints plain progress lines on stderr when not a terminal, nothing when quiet', async () => {
    const writes: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    const tty = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    Object.defineProperty(process.stderr, 'isTTY', { value: false, configurable: true });
    try {
      await download({ url: `${base}/file.bin`, dest: path.join(tmp, 'a.bin'), label: 'test-file' });
      const lines = writes.join('').trim().split('\n');
      expect(lines[0]).toContain('test-file');
      expect(lines[0]).toContain(`${base}/file.bin`);
      expect(lines.length).toBeGreaterThanOrEqual(4);
      expect(lines.length).toBeLessThanOrEqual(12);
      expect(lines[lines.length - 1]).toMatch(/done/);
      writes.length = 0;
      await download({ url: `${base}/file.bin`, dest: path.join(tmp, 'b.bin'), quiet: true });
      expect(writes).toEqual([]);
    } finally {
      spy.mockRestore();
      if (tty) Object.defineProperty(process.stderr, 'isTTY', tty);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
  });

  test('draws a progress bar with size, speed and ETA on a terminal', async () => {
    const writes: string[] = [];
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    const tty = Object.getOwnPropertyDescriptor(process.stderr, 'isTTY');
    Object.defineProperty(process.stderr, 'isTTY', { value: true, configurable: true });
    try {
      await download({ url: `${base}/file.bin`, dest: path.join(tmp, 'a.bin'), label: 'bar-file' });
    } finally {
      spy.mockRestore();
      if (tty) Object.defineProperty(process.stderr, 'isTTY', tty);
      else delete (process.stderr as { isTTY?: boolean }).isTTY;
    }
    const out = writes.join('');
    expect(out).toContain('bar-file');
    expect(out).toMatch(/100% \| 256 KiB \/ 256 KiB \| [\d.]+ [KMG]?i?B\/s \| ETA/);
    expect(fs.readFileSync(path.join(tmp, 'a.bin')).equals(BODY)).toBe(true);
  });
});

describe('download through a proxy (loopback)', () => {
  let proxy: LoopbackProxy;
  let authProxy: LoopbackProxy;
  // download.invalid resolves nowhere: only a proxy can fetch it.
  const route = (host: string): number | undefined => (host === 'download.invalid' || host === '127.0.0.1' ? port : undefined);

  beforeAll(async () => {
    proxy = await startLoopbackProxy({ route });
    authProxy = await startLoopbackProxy({ route, credentials: 'alice:s3cret' });
  });

  afterAll(async () => {
    await proxy.close();
    await authProxy.close();
  });

  beforeEach(() => {
    proxy.seen.length = 0;
    authProxy.seen.length = 0;
  });

  test('an http:// URL goes through HTTP_PROXY, http_proxy or npm_config_proxy', async () => {
    for (const variable of ['HTTP_PROXY', 'http_proxy', 'npm_config_proxy']) {
      proxy.seen.length = 0;
      const dest = path.join(tmp, `${variable}.bin`);
      await download({ url: 'http://download.invalid/file.bin', dest, sha256: SHA256, quiet: true, env: { [variable]: proxy.url } });
      expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
      expect(proxy.seen).toEqual([{ method: 'GET', target: 'http://download.invalid/file.bin', auth: undefined }]);
    }
    expect(requests).toEqual(['/file.bin', '/file.bin', '/file.bin']);
  });

  test('a proxy without a scheme is an http:// proxy; redirects go through it too', async () => {
    const dest = path.join(tmp, 'file.bin');
    await download({ url: 'http://download.invalid/redirect', dest, sha256: SHA256, quiet: true, env: { HTTP_PROXY: `127.0.0.1:${proxy.port}` } });
    expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
    // /redirect2 sends an absolute Location on 127.0.0.1, which the proxy fetches as well.
    expect(proxy.seen.map((r) => r.target)).toEqual(['http://download.invalid/redirect', 'http://download.invalid/redirect2', `${base}/file.bin`]);
  });

  test('NO_PROXY (and no_proxy, npm_config_noproxy) hosts are reached directly', async () => {
    for (const noProxy of [
      { NO_PROXY: '127.0.0.1' },
      { no_proxy: `example.com, 127.0.0.1:${port}` },
      { npm_config_noproxy: '127.0.0.0/8' },
      { NO_PROXY: '*' },
    ]) {
      const dest = path.join(tmp, 'file.bin');
      await download({ url: `${base}/file.bin`, dest, sha256: SHA256, quiet: true, env: { HTTP_PROXY: proxy.url, ...noProxy } });
      expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
    }
    expect(proxy.seen).toEqual([]);
    // A NO_PROXY entry for another port or host does not bypass it.
    await download({ url: `${base}/file.bin`, dest: path.join(tmp, 'again.bin'), quiet: true, env: { HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1:1,example.com' } });
    expect(proxy.seen).toHaveLength(1);
  });

  test('proxy credentials are sent, and never printed', async () => {
    const url = authProxy.url.replace('http://', 'http://alice:s3cret@');
    const dest = path.join(tmp, 'file.bin');
    await download({ url: 'http://download.invalid/file.bin', dest, sha256: SHA256, quiet: true, env: { HTTP_PROXY: url } });
    expect(authProxy.seen[0].auth).toBe(`Basic ${Buffer.from('alice:s3cret').toString('base64')}`);

    const wrong = authProxy.url.replace('http://', 'http://alice:wrong@');
    const err = (await download({ url: 'http://download.invalid/file.bin', dest: path.join(tmp, 'x'), quiet: true, env: { HTTP_PROXY: wrong } }).catch((e: Error) => e)) as Error;
    expect(err.message).toMatch(/HTTP 407/);
    expect(err.message).toContain(`through the proxy ${authProxy.url} (from HTTP_PROXY)`);
    expect(err.message).not.toContain('wrong');
    expect(fs.readdirSync(tmp)).toEqual(['file.bin']);
  });

  test('an unreachable proxy is named with its variable, without credentials', async () => {
    const dead = await freePort();
    const err = (await download({
      url: 'http://download.invalid/file.bin',
      dest: path.join(tmp, 'x'),
      quiet: true,
      env: { http_proxy: `http://bob:hunter2@127.0.0.1:${dead}` },
    }).catch((e: Error) => e)) as Error;
    expect(err.message).toBe(
      `Download of http://download.invalid/file.bin failed: cannot reach the proxy http://127.0.0.1:${dead} (from http_proxy): ECONNREFUSED. ` +
        'Check http_proxy, or list the host in NO_PROXY to connect directly.',
    );
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('a proxy setting that is not an http(s) proxy URL is a clear error', async () => {
    await expect(download({ url: `${base}/file.bin`, dest: path.join(tmp, 'x'), quiet: true, env: { HTTP_PROXY: 'socks5://127.0.0.1:1080' } })).rejects.toThrow(
      `Cannot download ${base}/file.bin: HTTP_PROXY names a socks5 proxy; only http:// and https:// proxies are supported`,
    );
    await expect(download({ url: `${base}/file.bin`, dest: path.join(tmp, 'x'), quiet: true, env: { HTTP_PROXY: 'http://[bad' } })).rejects.toThrow(
      /HTTP_PROXY is not a proxy URL: "http:\/\/\[bad"/,
    );
    expect(requests).toEqual([]);
  });

  describe('https:// through a CONNECT tunnel', () => {
    const TLS = path.join(__dirname, 'helpers', 'tls');
    let tlsServer: https.Server;
    let tlsProxy: LoopbackProxy;

    beforeAll(async () => {
      tlsServer = https.createServer({ key: fs.readFileSync(path.join(TLS, 'key.pem')), cert: fs.readFileSync(path.join(TLS, 'cert.pem')) }, (req, res) => {
        requests.push(`tls ${req.url}`);
        res.writeHead(200, { 'Content-Length': BODY.length });
        res.end(BODY);
      });
      await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
      const tlsPort = (tlsServer.address() as AddressInfo).port;
      tlsProxy = await startLoopbackProxy({ route: (host, p) => (host === 'download.invalid' && p === 443 ? tlsPort : undefined) });
    });

    afterAll(async () => {
      await tlsProxy.close();
      tlsServer.closeAllConnections();
      await new Promise<void>((resolve) => tlsServer.close(() => resolve()));
    });

    /** download() in a child that trusts the test certificate (NODE_EXTRA_CA_CERTS is read at start-up only). */
    function childDownload(opts: object, env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
      const args = ['-r', 'ts-node/register/transpile-only', path.join(__dirname, 'helpers', 'download-child.ts'), JSON.stringify(opts)];
      const childEnv: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, NODE_EXTRA_CA_CERTS: path.join(TLS, 'cert.pem'), ...env };
      return new Promise((resolve) => {
        execFile(process.execPath, args, { env: childEnv, cwd: path.join(__dirname, '..'), encoding: 'utf8', timeout: 60_000 }, (error, _stdout, stderr) => {
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr });
        });
      });
    }

    test('HTTPS_PROXY / npm_config_https_proxy: a CONNECT tunnel, TLS to the server inside it', async () => {
      for (const variable of ['HTTPS_PROXY', 'npm_config_https_proxy']) {
        tlsProxy.seen.length = 0;
        const dest = path.join(tmp, `${variable}.bin`);
        const r = await childDownload({ url: 'https://download.invalid/file.bin', dest, sha256: SHA256 }, { [variable]: tlsProxy.url });
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(fs.readFileSync(dest).equals(BODY)).toBe(true);
        expect(tlsProxy.seen).toEqual([{ method: 'CONNECT', target: 'download.invalid:443', auth: undefined }]);
      }
      expect(requests).toEqual(['tls /file.bin', 'tls /file.bin']);
    });

    test('a CONNECT the proxy refuses is an HTTP error naming the proxy; nothing is left behind', async () => {
      const dest = path.join(tmp, 'x.bin');
      const r = await childDownload({ url: 'https://elsewhere.invalid/file.bin', dest }, { HTTPS_PROXY: tlsProxy.url });
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`Download of https://elsewhere.invalid/file.bin through the proxy ${tlsProxy.url} (from HTTPS_PROXY) failed: HTTP 502 Bad Gateway`);
      expect(fs.readdirSync(tmp)).toEqual([]);
    });
  });
});

describe('formatBytes', () => {
  test('formats with binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 * 1024)).toBe('5.0 MiB');
    expect(formatBytes(2.25 * 1024 ** 3)).toBe('2.3 GiB');
    expect(formatBytes(200 * 1024 ** 2)).toBe('200 MiB');
  });
});
