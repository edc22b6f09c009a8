// What a libtorch folder says about itself: where its CMake config is, its version (build-version
// or torch/version.h), whether it is a CUDA build, and the C++ ABI its TorchConfig.cmake declares.
import * as fs from 'fs';
import * as path from 'path';
import { isFile } from '../lib/file-kind';
import type { LibtorchLocation } from '../lib/native';

export const VERSION_HEADER = path.join('include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h');
export const TORCH_CONFIG = path.join('Torch', 'TorchConfig.cmake');

/** The cmake folder (holding Torch/) inside a libtorch root, if any. */
export function cmakeDirOfRoot(root: string): string | undefined {
  for (const sub of [path.join('share', 'cmake'), path.join('lib', 'cmake')]) {
    if (isFile(path.join(root, sub, TORCH_CONFIG))) return path.join(root, sub);
  }
  return undefined;
}

/**
 * TORCH_VERSION_MAJOR/MINOR/PATCH of a torch/version.h. Newer trees generate the numbers into
 * torch/headeronly/version.h and leave torch/version.h an #include of it: follow that include,
 * relative to the include folders above the file.
 */
export function readVersionHeader(file: string): string | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const part = (name: string): string | undefined => new RegExp(`#define\\s+TORCH_VERSION_${name}\\s+(\\d+)`).exec(text)?.[1];
  const [major, minor, patch] = [part('MAJOR'), part('MINOR'), part('PATCH')];
  if (major !== undefined && minor !== undefined) return `${major}.${minor}.${patch ?? '0'}`;
  const included = /#include\s+[<"](torch\/headeronly\/version\.h)[>"]/.exec(text)?.[1];
  if (!included) return undefined;
  const parts = path.resolve(file).split(path.sep);
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] !== 'include') continue;
    const candidate = path.join(parts.slice(0, i + 1).join(path.sep) || path.sep, included);
    if (candidate !== path.resolve(file) && isFile(candidate)) return readVersionHeader(candidate);
  }
  return undefined;
}

/** The C++ ABI a TorchConfig.cmake declares in TORCH_CXX_FLAGS, if it says. */
export function readCxx11Abi(cmakeDir: string): boolean | undefined {
  try {
    const m = /_GLIBCXX_USE_CXX11_ABI=([01])/.exec(fs.readFileSync(path.join(cmakeDir, TORCH_CONFIG), 'utf8'));
    return m ? m[1] === '1' : undefined;
  } catch {
    return undefined;
  }
}


/** Version of a libtorch root: build-version, else version.h. */
export function versionOfRoot(root: string): string | undefined {
  try {
    const line = fs.readFileSync(path.join(root, 'build-version'), 'utf8').trim().split('\n')[0]?.trim();
    if (line) return line;
  } catch {
    // no build-version: fall back to the header
  }
  return readVersionHeader(path.join(root, VERSION_HEADER));
}


/** Whether a libtorch root is a CUDA build: its version's +cuNNN/+cpu suffix, else whether it ships libtorch_cuda.so. */
export function cudaOfRoot(root: string, version: string | undefined): boolean {
  if (version && /\+cu\d/.test(version)) return true;
  if (version && /\+cpu/.test(version)) return false;
  return isFile(path.join(root, 'lib', 'libtorch_cuda.so'));
}


/** One line naming a found libtorch: version, CUDA or CPU, ABI and where it is. */
export function describeLibtorch(loc: LibtorchLocation): string {
  const version = loc.version ? ` ${loc.version}` : '';
  const cuda = loc.cuda === undefined ? '' : loc.cuda ? ' (CUDA)' : ' (CPU)';
  const abi = loc.cxx11Abi === undefined ? '' : loc.cxx11Abi ? ', cxx11 ABI' : ', pre-cxx11 ABI';
  return `libtorch${version}${cuda}${abi} at ${loc.prefixPath}`;
}
