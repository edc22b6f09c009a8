// The zip container of a torch.save file, read from memory with yauzl: its entries by name (each name
// once), and an entry's bytes checked against its size, its CRC-32 and PTH_LIMITS. Failures are plain
// Errors, which parsePth (pth.ts) reports as a damaged zip.
import * as zlib from 'zlib';
import * as yauzl from 'yauzl';
import { PTH_LIMITS, quote } from './pth-limits';

/** The zip held in `bytes`, its entries read one at a time. */
export function openZip(bytes: Buffer): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(bytes, { lazyEntries: true, autoClose: false, validateEntrySizes: true }, (error, zip) =>
      (error ? reject(error) : resolve(zip)));
  });
}

/** The zip's entries by name: at most PTH_LIMITS.zipEntries of them, no name twice. */
export function listEntries(zip: yauzl.ZipFile): Promise<Map<string, yauzl.Entry>> {
  return new Promise((resolve, reject) => {
    if (zip.entryCount > PTH_LIMITS.zipEntries) {
      reject(new Error(`the zip has ${zip.entryCount} entries (at most ${PTH_LIMITS.zipEntries})`));
      return;
    }
    const entries = new Map<string, yauzl.Entry>();
    zip.on('entry', (entry: yauzl.Entry) => {
      if (entries.has(entry.fileName)) {
        reject(new Error(`the zip holds ${quote(entry.fileName)} twice`));
        return;
      }
      entries.set(entry.fileName, entry);
      zip.readEntry();
    });
    zip.on('end', () => resolve(entries));
    zip.on('error', reject);
    zip.readEntry();
  });
}

/** An entry's bytes, checked against its size and CRC-32. */
export function readEntry(zip: yauzl.ZipFile, entry: yauzl.Entry): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (entry.uncompressedSize > PTH_LIMITS.tensorBytes) {
      reject(new Error(`${quote(entry.fileName)} unpacks to ${entry.uncompressedSize} bytes (at most ${PTH_LIMITS.tensorBytes})`));
      return;
    }
    if (entry.isCompressed() && entry.uncompressedSize > PTH_LIMITS.inflateRatio * entry.compressedSize + 1024) {
      reject(new Error(`${quote(entry.fileName)} claims to unpack ${entry.compressedSize} bytes to ${entry.uncompressedSize}`));
      return;
    }
    try {
      zip.openReadStream(entry, (error, stream) => {
        if (error) {
          reject(error);
          return;
        }
        const chunks: Buffer[] = [];
        let length = 0;
        stream.on('data', (chunk: Buffer) => {
          length += chunk.length;
          if (length > entry.uncompressedSize) {
            stream.destroy();
            reject(new Error(`${quote(entry.fileName)} holds more than its ${entry.uncompressedSize} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        stream.on('error', reject);
        stream.on('end', () => {
          const data = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length);
          if (data.length !== entry.uncompressedSize) {
            reject(new Error(`${quote(entry.fileName)} holds ${data.length} bytes, not ${entry.uncompressedSize}`));
          } else if (zlib.crc32(data) >>> 0 !== entry.crc32 >>> 0) {
            reject(new Error(`${quote(entry.fileName)} is corrupted (its CRC-32 does not match)`));
          } else {
            resolve(data);
          }
        });
      });
    } catch (error) {
      reject(error);
    }
  });
}
