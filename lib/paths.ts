// Where the package's own files are, whether running from the TypeScript sources (ts-jest,
// ts-node) or from the compiled dist/ folder.
import * as fs from 'fs';
import * as path from 'path';

// Compiled, this file is <root>/dist/lib/paths.js; from source, <root>/lib/paths.ts.
const compiled = path.basename(path.dirname(__dirname)) === 'dist';

export const PROJECT_ROOT = path.resolve(__dirname, compiled ? '../..' : '..');
export const BUILD_DIR = path.join(PROJECT_ROOT, 'build');
export const ADDON_PATH = path.join(BUILD_DIR, 'Release', 'xception_torch.node');
// Written by scripts/build-native.ts: which libtorch the addon was built against.
export const BUILD_INFO_PATH = path.join(BUILD_DIR, 'libtorch.json');

/** This package's version, from its package.json (read once). */
export function packageVersion(): string {
  cachedVersion ??= (JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  return cachedVersion;
}
let cachedVersion: string | undefined;
