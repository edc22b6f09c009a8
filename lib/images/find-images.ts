// The image files a command line names: files as given, folders walked (recursively, sorted, only
// the extensions the decoder reads, as torchvision's ImageFolder filters them).
import * as fs from 'fs';
import * as path from 'path';
import { IMAGE_EXTENSIONS } from './decode';

const isImageFile = (name: string): boolean => IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());

async function walk(folder: string, into: string[]): Promise<void> {
  const entries = await fs.promises.readdir(folder, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    const full = path.join(folder, entry.name);
    if (entry.isDirectory() || (entry.isSymbolicLink() && (await fs.promises.stat(full).catch(() => undefined))?.isDirectory())) {
      await walk(full, into);
    } else if (isImageFile(entry.name)) {
      into.push(full);
    }
  }
}

/**
 * The files `targets` name, in order: a file as it is (whatever its extension), a folder's .jpg,
 * .jpeg and .png files at any depth, sorted by path. Throws when a target does not exist.
 */
export async function findImages(targets: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const target of targets) {
    const stat = await fs.promises.stat(target).catch(() => undefined);
    if (!stat) throw new Error(`${target} does not exist`);
    if (stat.isDirectory()) {
      const found: string[] = [];
      await walk(target, found);
      if (found.length === 0) throw new Error(`${target} holds no ${IMAGE_EXTENSIONS.join(', ')} files`);
      files.push(...found);
    } else {
      files.push(target);
    }
  }
  return files;
}
