// Whether a path is a file or a folder (symbolic links followed), without throwing: a missing path,
// one that cannot be reached and one of the other kind all answer false.
import * as fs from 'fs';

export function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}
