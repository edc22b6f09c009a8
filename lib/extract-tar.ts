/**
 * Safe, bounded extraction of a .tar.gz into a new folder: all of it, or nothing.
 *
 * tar's parser reads the archive (gzip, headers, checksums); this module writes the files itself. The
 * reason is the failure path: on a damaged archive `tar.x` rejects while its file writes are still in
 * flight, so a cleanup right after it races them (ENOTEMPTY), hides the real error and leaves files
 * behind. Here every write is tracked: on any failure the reading stops, each open file is closed,
 * and only then is the folder removed and the first error reported.
 *
 * Refused: absolute paths, `..`, anything but plain files and folders (links, devices, FIFOs), a file
 * listed twice, and archives over the limits (entry count, bytes per file, bytes in all).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tar from 'tar';
import { formatBytes } from './report/format';

export interface ExtractLimits {
  /** The most bytes all files together may hold. */
  maxTotalBytes: number;
  /** The most bytes one file may hold. */
  maxEntryBytes: number;
  /** The most entries (files and folders) the archive may have. */
  maxEntries: number;
}

export const DEFAULT_EXTRACT_LIMITS: ExtractLimits = {
  maxTotalBytes: 1024 ** 3,
  maxEntryBytes: 256 * 1024 ** 2,
  maxEntries: 1000,
};

export interface ExtractOptions {
  limits?: Partial<ExtractLimits>;
  /** Appended to a limit error: how to raise the limit. */
  limitHint?: string;
}

/** Why an entry must not be extracted, or undefined when it is a plain file or folder inside the target. */
function unsafeEntry(entry: tar.ReadEntry): string | undefined {
  const p = entry.path;
  if (p.startsWith('/') || p.startsWith('\\') || /^[a-zA-Z]:/.test(p)) return 'it has an absolute path';
  if (p.split(/[\\/]/).includes('..')) return "its path contains '..'";
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
    case 'Directory':
      return undefined;
    case 'SymbolicLink':
      return `it is a symbolic link (to ${entry.linkpath ?? '?'})`;
    case 'Link':
      return `it is a hard link (to ${entry.linkpath ?? '?'})`;
    default:
      return `it is a ${entry.type} entry; only plain files and folders are allowed`;
  }
}

/**
 * Extracts the .tar.gz `archive` into `dest`, which must not exist yet. Settles only once nothing is
 * being written any more; on failure `dest` is gone and the error is the first cause:
 * "refused to extract NAME: ..." for a hostile or oversized archive, "cannot extract NAME (...)" for
 * a damaged or truncated one.
 */
export async function extractTarGz(archive: string, dest: string, opts: ExtractOptions = {}): Promise<void> {
  const limits = { ...DEFAULT_EXTRACT_LIMITS, ...opts.limits };
  for (const [name, value] of Object.entries(limits)) {
    if (!(Number.isSafeInteger(value) && value > 0)) throw new Error(`extract limit ${name} must be a positive whole number, got ${value}`);
  }
  const root = path.resolve(dest);
  await fs.promises.mkdir(root);
  try {
    await unpack(archive, root, limits, opts.limitHint);
  } catch (err) {
    await fs.promises.rm(root, { recursive: true, force: true });
    throw err;
  }
}

function unpack(archive: string, root: string, limits: ExtractLimits, limitHint: string | undefined): Promise<void> {
  const name = path.basename(archive);
  const refused = (message: string): Error => new Error(`refused to extract ${name}: ${message}`);
  const overLimit = (message: string): Error => refused(`${message}${limitHint ? ` (${limitHint})` : ''}`);

  return new Promise((resolve, reject) => {
    const writes = new Set<Promise<void>>();
    /** Closes each file still being written; each removes itself when closed. */
    const stops = new Set<(err: Error) => void>();
    const written = new Set<string>();
    let failure: Error | undefined;
    let entries = 0;
    let declaredTotal = 0;
    let bytesTotal = 0;

    const source = fs.createReadStream(archive);
    const parser = new tar.Parser({ strict: true });

    /** Resolves or rejects once every write has settled. */
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      void Promise.allSettled([...writes]).then(() => (failure ? reject(failure) : resolve()));
    };
    const fail = (err: Error): void => {
      if (failure) return;
      failure = err;
      source.destroy();
      parser.abort(err); // stops decompressing; its own 'error' that follows is ignored
      for (const stop of [...stops]) stop(err);
      settle();
    };
    const damaged = (err: Error): void =>
      fail(new Error(`cannot extract ${name} (truncated, damaged, or not a tar.gz): ${err.message}`, { cause: err }));

    const track = (work: Promise<void>): void => {
      const done = work.catch((err: Error) => fail(err));
      writes.add(done);
    };

    /** Counts the bytes of one file as they come; an error when a limit is passed. */
    const account = (entry: tar.ReadEntry, soFar: number): Error | undefined => {
      if (soFar > entry.size) return refused(`entry "${entry.path}" holds more bytes than its header says (${entry.size})`);
      if (bytesTotal > limits.maxTotalBytes) return overLimit(`it holds more than ${formatBytes(limits.maxTotalBytes)} in all`);
      return undefined;
    };

    const writeFile = async (entry: tar.ReadEntry, target: string): Promise<void> => {
      await fs.promises.mkdir(path.dirname(target), { recursive: true });
      if (failure) {
        entry.resume();
        return;
      }
      await new Promise<void>((done, failed) => {
        let error: Error | undefined;
        let soFar = 0;
        const out = fs.createWriteStream(target, { flags: 'wx', mode: 0o644 });
        const stop = (err: Error): void => {
          error ??= err;
          entry.pause();
          out.destroy();
        };
        stops.add(stop);
        out.on('error', (err: NodeJS.ErrnoException) =>
          stop(new Error(`cannot write ${target} while extracting ${name}: ${err.message}`, { cause: err })),
        );
        out.on('close', () => {
          stops.delete(stop);
          if (error) failed(error);
          else done();
        });
        entry.on('data', (chunk: Buffer) => {
          if (error) return;
          soFar += chunk.length;
          bytesTotal += chunk.length;
          const problem = account(entry, soFar);
          if (problem) {
            stop(problem);
            return;
          }
          if (!out.write(chunk)) {
            entry.pause();
            out.once('drain', () => entry.resume());
          }
        });
        entry.on('end', () => {
          if (!error) out.end();
        });
      });
    };

    parser.on('entry', (entry: tar.ReadEntry) => {
      if (failure) {
        entry.resume();
        return;
      }
      const why = unsafeEntry(entry);
      const target = path.join(root, entry.path);
      const inside = path.relative(root, target);
      let problem: Error | undefined;
      if (why) problem = refused(`entry "${entry.path}": ${why}`);
      else if (inside.startsWith('..') || path.isAbsolute(inside)) problem = refused(`entry "${entry.path}" lies outside the folder`);
      else if (++entries > limits.maxEntries) problem = overLimit(`it has more than ${limits.maxEntries} entries`);
      else if (entry.type !== 'Directory') {
        declaredTotal += entry.size;
        if (entry.size > limits.maxEntryBytes) {
          problem = overLimit(`entry "${entry.path}" is ${formatBytes(entry.size)}, more than the ${formatBytes(limits.maxEntryBytes)} allowed for one file`);
        } else if (declaredTotal > limits.maxTotalBytes) {
          problem = overLimit(`it holds more than ${formatBytes(limits.maxTotalBytes)} in all`);
        } else if (written.has(inside)) {
          problem = refused(`entry "${entry.path}" appears twice`);
        }
      }
      if (problem) {
        entry.resume();
        fail(problem);
        return;
      }
      if (entry.type === 'Directory') {
        entry.resume();
        track(fs.promises.mkdir(target, { recursive: true }).then(() => undefined));
        return;
      }
      written.add(inside);
      track(writeFile(entry, target));
    });
    parser.on('error', damaged);
    source.on('error', (err) => fail(new Error(`cannot read ${archive}: ${err.message}`, { cause: err })));
    // The parser ends after the last entry was handed out; writes may still be running.
    parser.on('end', settle);
    source.pipe(parser as unknown as NodeJS.WritableStream);
  });
}
