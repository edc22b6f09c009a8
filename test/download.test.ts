import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { download, formatBytes } from '../lib/download';

const BODY = crypto.randomBytes(256 * 1024 + 17);
const SHA256 = crypto.createHash('sha256').update(BODY).digest('hex');
const MD5 = crypto.createHash('md5').update(BODY).digest('hex');

let server: http.Server;
let base: string;
let tmp: string;
const requests: string[] = [];

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
      default:
        res.writeHead(404);
        res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
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

  test('connection refused reads as offline', async () => {
    // A port that was just free: bind, note it, close.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await expect(download({ url: `http://127.0.0.1:${port}/x`, dest: path.join(tmp, 'x'), quiet: true })).rejects.toThrow(
      /ECONNREFUSED.*offline/,
    );
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
