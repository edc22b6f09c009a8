// Writing a file so that readers see the old content or the new, never a mixture, and so that a
// crash or power loss leaves one of the two: the data goes to a temporary file of its own in the
// same folder (created exclusively, under a random name, so concurrent writers never share it),
// is flushed to the disk, then renamed over the file; the folder is flushed after the rename.
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { isProcessAlive } from './process-alive';

/** `<name>.tmp-<pid>` or `<name>.tmp-<pid>-<hex>`: the temporary files and folders of this package. */
const TEMPORARY = /\.tmp-(\d+)(?:-[0-9a-f]+)?$/;

/** A fresh temporary name for `file`, in its folder, carrying this process's id. */
export function temporaryName(file: string): string {
  return `${file}.tmp-${process.pid}-${randomBytes(8).toString('hex')}`;
}

/** Flushes a folder's entries (a rename, a new file) to the disk. A no-op where folders cannot be opened (Windows). */
export async function fsyncFolder(folder: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await fs.promises.open(folder, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems do not flush folders; there is nothing more to do on them.
    if (!['EINVAL', 'ENOTSUP', 'EISDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle.close();
  }
}

/** Flushes a file written by someone else (e.g. the addon) to the disk. */
export async function fsyncFile(file: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The largest piece handed to one write() call (Linux writes at most 2 GiB - 4 KiB at a time). */
const WRITE_PIECE = 1 << 30;

/** Writes `chunk` whole at the handle's position, however the system splits it. */
async function writeChunk(handle: fs.promises.FileHandle, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.byteLength;) {
    const { bytesWritten } = await handle.write(chunk, done, Math.min(WRITE_PIECE, chunk.byteLength - done));
    done += bytesWritten;
  }
}

/**
 * Writes `data` to `file` atomically. `data` may be a list of chunks, written one after another:
 * a large file made of many tensors goes to the disk without first being copied into one buffer.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): Promise<void> {
  const folder = path.dirname(path.resolve(file));
  await fs.promises.mkdir(folder, { recursive: true });
  const temp = temporaryName(file);
  try {
    // 'wx': fails rather than share a file with another writer.
    const handle = await fs.promises.open(temp, 'wx');
    try {
      if (Array.isArray(data)) {
        for (const chunk of data as readonly Uint8Array[]) await writeChunk(handle, chunk);
      } else {
        await handle.writeFile(data as string | Uint8Array);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temp, file);
  } catch (error) {
    await fs.promises.rm(temp, { force: true });
    throw error;
  }
  await fsyncFolder(folder);
}

/**
 * Removes the temporary files and folders in `folder` (not below it) left by processes that no
 * longer run (killed in the middle of a write). Returns their names.
 */
export async function removeStaleTemporaries(folder: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const stale = names.filter((name) => {
    const match = TEMPORARY.exec(name);
    return match !== null && Number(match[1]) !== process.pid && !isProcessAlive(Number(match[1]));
  });
  for (const name of stale) await fs.promises.rm(path.join(folder, name), { recursive: true, force: true });
  return stale;
}
