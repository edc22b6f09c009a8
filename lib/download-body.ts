// The body of a download (see download.ts) into its temporary file: held to the size limit, metered
// for progress and the idle timer, hashed for the SHA-256 and MD5 checks on the fly, and checked to
// be whole; each failure says how far it got.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { Transform } from 'stream';
import { pipeline } from 'stream/promises';
import { deadlineError, IdleTimer, offlineError, Transfer } from './download-http';
import { Progress } from './download-progress';
import { formatBytes } from './report/format';

/** Resolves once `stream` has closed its file (at once if it already has). */
function closed(stream: fs.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) resolve();
    else stream.once('close', () => resolve());
  });
}

/** Streams the 2xx response `res` into `tmp` and checks it; throws, the file left for the caller to remove, when it is not right. */
export async function receiveBody(t: Transfer, res: http.IncomingMessage, idle: IdleTimer, tmp: string, where: string): Promise<void> {
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
