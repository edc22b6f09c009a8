/**
 * Locates libtorch for the native build, or fetches it.
 *
 * Order: LIBTORCH → Python PyTorch → system libtorch (Debian/Ubuntu libtorch-dev) → cached download →
 * download of a pinned official cxx11-ABI build → `apt-get install libtorch-dev` on Debian/Ubuntu as
 * root → an error listing every option. Each step logs one line.
 *
 * Run as a script it prints the location (`--json` for JSON on stdout) or exits 1 with the reason.
 * This file is the search; its parts: libtorch-tree.ts (what a libtorch folder says about itself),
 * libtorch-pins.ts (the pinned builds, which one to use), libtorch-archive.ts (downloading and
 * unpacking one into the cache), run-command.ts (running python3, nvidia-smi, apt-get).
 */
import * as fs from 'fs';
import * as path from 'path';
import { defaultCacheDir } from '../lib/cache-dir';
import { isFile } from '../lib/file-kind';
import type { LibtorchLocation } from '../lib/native';
import { cacheFolder, downloadLibtorch } from './libtorch-archive';
import { choosePin, LIBTORCH_PINS, LibtorchPin } from './libtorch-pins';
import { cmakeDirOfRoot, cudaOfRoot, describeLibtorch, readCxx11Abi, readVersionHeader, TORCH_CONFIG, VERSION_HEADER, versionOfRoot } from './libtorch-tree';
import { CommandResult, runCommand } from './run-command';

// Defined beside BuildInfo in lib/native.ts (the build records one in build/libtorch.json).
export type { LibtorchLocation };
// The search's parts, importable from here as before.
export type { CommandResult };
export { LIBTORCH_PINS, type LibtorchPin, type LibtorchVariant } from './libtorch-pins';
export { readCxx11Abi, readVersionHeader } from './libtorch-tree';

export interface FindOptions {
  env?: NodeJS.ProcessEnv;
  /** Python interpreters to ask for torch; default $XCEPTION_TORCH_PYTHON (if set), 'python3', '/usr/bin/python3'. */
  pythons?: string[];
  /** Folders checked for Torch/TorchConfig.cmake (system libtorch). */
  systemCmakeDirs?: string[];
  /** version.h of the system libtorch; default /usr/include/torch/csrc/api/include/torch/version.h. */
  systemVersionHeader?: string;
  /** Default $XCEPTION_TORCH_CACHE, $XDG_CACHE_HOME/xception-torch or ~/.cache/xception-torch. */
  cacheDir?: string;
  /** Allow downloading; default true unless XCEPTION_TORCH_NO_DOWNLOAD=1. */
  download?: boolean;
  /** Connect/idle timeout of the download; default 15000 ms. */
  downloadTimeoutMs?: number;
  /** Most bytes the archive may unpack to; default $XCEPTION_TORCH_LIBTORCH_MAX_BYTES or 32 GiB. */
  maxExtractBytes?: number;
  /** No download progress output. */
  quiet?: boolean;
  /** Allow apt-get; default true unless XCEPTION_TORCH_NO_APT=1. */
  apt?: boolean;
  /** Default: process.getuid() === 0. */
  isRoot?: boolean;
  /** Contents of /etc/os-release. */
  osRelease?: string;
  runCommand?: (cmd: string, args: string[]) => CommandResult;
  log?: (msg: string) => void;
}

export const DEFAULT_SYSTEM_CMAKE_DIRS = [
  '/usr/lib/x86_64-linux-gnu/cmake',
  '/usr/lib/aarch64-linux-gnu/cmake',
  '/usr/lib/cmake',
  '/usr/local/lib/cmake',
  '/usr/share/cmake',
];
const DEFAULT_SYSTEM_VERSION_HEADER = '/usr/include/torch/csrc/api/include/torch/version.h';
const PYTHON_PROBE =
  'import torch,sys;print(torch.utils.cmake_prefix_path);print(torch.__version__);print(int(torch.version.cuda is not None))';

/** Parses ID and ID_LIKE of /etc/os-release. */
function osIds(osRelease: string): string[] {
  const ids: string[] = [];
  for (const line of osRelease.split('\n')) {
    const m = /^\s*(ID|ID_LIKE)\s*=\s*(.*)$/.exec(line);
    if (m) ids.push(...m[2].trim().replace(/^["']|["']$/g, '').toLowerCase().split(/\s+/).filter(Boolean));
  }
  return ids;
}

function readOsRelease(): string {
  for (const file of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      // try the next one
    }
  }
  return '';
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

class Finder {
  private readonly env: NodeJS.ProcessEnv;
  private readonly run: (cmd: string, args: string[]) => CommandResult;
  private readonly log: (msg: string) => void;
  private readonly cacheDir: string;
  private readonly tried: string[] = [];
  private pinCache: LibtorchPin | undefined;

  constructor(private readonly opts: FindOptions) {
    this.env = opts.env ?? process.env;
    this.run = opts.runCommand ?? runCommand;
    const log = opts.log ?? ((msg: string) => console.error(msg));
    this.log = (msg) => log(`libtorch: ${msg}`);
    this.cacheDir = path.resolve(opts.cacheDir ?? defaultCacheDir(this.env));
  }

  /** Logs a step that found nothing and remembers it for the final error. */
  private miss(msg: string): void {
    this.tried.push(msg);
    this.log(msg);
  }

  private found(loc: LibtorchLocation): LibtorchLocation {
    const cmakeDir = isFile(path.join(loc.prefixPath, TORCH_CONFIG)) ? loc.prefixPath : cmakeDirOfRoot(loc.prefixPath);
    const cxx11Abi = cmakeDir ? readCxx11Abi(cmakeDir) : undefined;
    const withAbi = cxx11Abi === undefined ? loc : { ...loc, cxx11Abi };
    this.log(`using ${describeLibtorch(withAbi)} (from ${loc.source})`);
    return withAbi;
  }

  async find(): Promise<LibtorchLocation> {
    const steps: Array<() => LibtorchLocation | undefined | Promise<LibtorchLocation | undefined>> = [
      () => this.fromEnv(),
      () => this.fromPython(),
      () => this.fromSystem('system'),
      () => this.fromCache(),
      () => this.fromDownload(),
      () => this.fromApt(),
    ];
    for (const step of steps) {
      const loc = await step();
      if (loc) return this.found(loc);
    }
    throw new Error(this.noLibtorchMessage());
  }

  // a. LIBTORCH
  private fromEnv(): LibtorchLocation | undefined {
    const value = this.env.LIBTORCH;
    if (!value) {
      this.miss('LIBTORCH is not set');
      return undefined;
    }
    const root = path.resolve(value);
    const cmakeDir = cmakeDirOfRoot(root);
    if (!cmakeDir) {
      const nested = path.join(root, 'libtorch');
      const hint = cmakeDirOfRoot(nested) ? ` Did you mean LIBTORCH=${nested}?` : '';
      throw new Error(
        `LIBTORCH=${value} points at something that is not libtorch: ` +
          `${path.join(root, 'share', 'cmake', TORCH_CONFIG)} does not exist.${hint} ` +
          `Point LIBTORCH at the unzipped "libtorch" folder, or unset it to search elsewhere.`,
      );
    }
    const version = versionOfRoot(root);
    return { source: 'env', prefixPath: root, root, version, cuda: cudaOfRoot(root, version) };
  }

  // b. Python PyTorch (and TORCH_CMAKE_PREFIX_PATH)
  private fromPython(): LibtorchLocation | undefined {
    const explicit = this.env.TORCH_CMAKE_PREFIX_PATH;
    if (explicit) {
      const dir = path.resolve(explicit);
      if (isFile(path.join(dir, TORCH_CONFIG))) {
        const root = path.resolve(dir, '..', '..');
        const version = readVersionHeader(path.join(root, VERSION_HEADER));
        return { source: 'python', prefixPath: dir, root, version, cuda: isFile(path.join(root, 'lib', 'libtorch_cuda.so')) };
      }
      this.miss(`TORCH_CMAKE_PREFIX_PATH=${explicit} has no ${TORCH_CONFIG}; ignored`);
    }
    // XCEPTION_TORCH_PYTHON (also the parity tests' interpreter) is asked first.
    const pythons = this.opts.pythons ?? [...(this.env.XCEPTION_TORCH_PYTHON ? [this.env.XCEPTION_TORCH_PYTHON] : []), 'python3', '/usr/bin/python3'];
    for (const py of pythons) {
      const r = this.run(py, ['-c', PYTHON_PROBE]);
      if (r.status !== 0) {
        const why = lastLines(r.stderr, 1) || `exit status ${r.status}`;
        this.miss(`${py}: no usable PyTorch (${why})`);
        continue;
      }
      const lines = r.stdout.trim().split('\n').map((l) => l.trim());
      if (lines.length < 3) {
        this.miss(`${py}: unexpected answer from torch: ${JSON.stringify(r.stdout.trim())}`);
        continue;
      }
      const [cmakePath, version, cudaFlag] = lines.slice(-3);
      const dir = path.resolve(cmakePath);
      if (!isFile(path.join(dir, TORCH_CONFIG))) {
        this.miss(`${py}: torch ${version} reports cmake_prefix_path ${cmakePath}, which has no ${TORCH_CONFIG}; skipped`);
        continue;
      }
      return {
        source: 'python',
        prefixPath: dir,
        root: path.resolve(dir, '..', '..'),
        version,
        cuda: cudaFlag === '1',
      };
    }
    return undefined;
  }

  // c. System libtorch
  private fromSystem(source: 'system' | 'apt'): LibtorchLocation | undefined {
    const dirs = this.opts.systemCmakeDirs ?? DEFAULT_SYSTEM_CMAKE_DIRS;
    for (const dir of dirs) {
      if (isFile(path.join(dir, TORCH_CONFIG))) {
        const version = readVersionHeader(this.opts.systemVersionHeader ?? DEFAULT_SYSTEM_VERSION_HEADER);
        const cuda = isFile(path.join(dir, '..', 'libtorch_cuda.so'));
        return { source, prefixPath: dir, version, cuda };
      }
    }
    this.miss(`no system libtorch (${TORCH_CONFIG} in none of ${dirs.length ? dirs.join(', ') : '(no folders)'})`);
    return undefined;
  }

  /** The build to use from the cache or to download (scripts/libtorch-pins.ts), chosen once. */
  private pin(): LibtorchPin {
    if (!this.pinCache) this.pinCache = choosePin(this.env, this.run, this.log);
    return this.pinCache;
  }

  private located(source: 'cache' | 'download', root: string, pin: LibtorchPin): LibtorchLocation {
    const version = versionOfRoot(root) ?? pin.version;
    return { source, prefixPath: root, root, version, cuda: pin.variant === 'cuda' || cudaOfRoot(root, version) };
  }

  // d. Cache
  private fromCache(): LibtorchLocation | undefined {
    const pin = this.pin();
    const root = path.join(cacheFolder(this.cacheDir, pin), 'libtorch');
    if (isFile(path.join(root, 'share', 'cmake', TORCH_CONFIG))) return this.located('cache', root, pin);
    this.miss(`no cached download at ${root}`);
    return undefined;
  }

  // e. Download
  private async fromDownload(): Promise<LibtorchLocation | undefined> {
    const allowed = this.opts.download ?? this.env.XCEPTION_TORCH_NO_DOWNLOAD !== '1';
    if (!allowed) {
      this.miss('download skipped (XCEPTION_TORCH_NO_DOWNLOAD=1)');
      return undefined;
    }
    const pin = this.pin();
    try {
      const root = await downloadLibtorch(pin, {
        cacheDir: this.cacheDir,
        timeoutMs: this.opts.downloadTimeoutMs ?? 15000,
        quiet: this.opts.quiet,
        maxExtractBytes: this.opts.maxExtractBytes,
        env: this.env,
        log: this.log,
      });
      return this.located('download', root, pin);
    } catch (err) {
      this.miss(`download of ${pin.url} failed: ${(err as Error).message}`);
      return undefined;
    }
  }

  // f. apt-get install libtorch-dev
  private fromApt(): LibtorchLocation | undefined {
    const allowed = this.opts.apt ?? this.env.XCEPTION_TORCH_NO_APT !== '1';
    if (!allowed) {
      this.miss('apt-get skipped (XCEPTION_TORCH_NO_APT=1)');
      return undefined;
    }
    const ids = osIds(this.opts.osRelease ?? readOsRelease());
    if (!ids.includes('debian') && !ids.includes('ubuntu')) {
      this.miss('apt-get skipped (not Debian/Ubuntu)');
      return undefined;
    }
    const isRoot = this.opts.isRoot ?? process.getuid?.() === 0;
    if (!isRoot) {
      this.miss('apt-get skipped (not root)');
      return undefined;
    }
    this.log("Installing Debian's libtorch-dev (and libgloo-dev, Gloo's headers for data-parallel training, libjpeg-dev, for decoding JPEGs natively, libdnnl-dev, for oneDNN inference convolutions, and libopenblas0-openmp, in place of the reference BLAS Debian links) with apt-get (set XCEPTION_TORCH_NO_APT=1 to skip); this can take a few minutes...");
    const update = this.run('apt-get', ['update']);
    if (update.status !== 0) this.log(`apt-get update failed (${lastLines(update.stderr, 2) || `exit status ${update.status}`}); trying the install anyway`);
    const install = this.run('apt-get', ['install', '-y', 'libtorch-dev', 'libgloo-dev', 'libjpeg-dev', 'libdnnl-dev', 'libopenblas0-openmp']);
    if (install.status !== 0) {
      this.miss(`apt-get install -y libtorch-dev libgloo-dev libjpeg-dev libdnnl-dev libopenblas0-openmp failed: ${lastLines(install.stderr, 3) || `exit status ${install.status}`}`);
      return undefined;
    }
    return this.fromSystem('apt');
  }

  private noLibtorchMessage(): string {
    let pin: LibtorchPin | undefined;
    try {
      pin = this.pin();
    } catch {
      pin = undefined;
    }
    const p = pin ?? LIBTORCH_PINS.cpu;
    const folder = cacheFolder(this.cacheDir, p);
    return [
      'Could not find libtorch. Tried:',
      ...this.tried.map((t) => `  - ${t}`),
      '',
      'Any one of these fixes it:',
      '  1. Point LIBTORCH at an unzipped libtorch (cxx11 ABI):',
      '       export LIBTORCH=/path/to/libtorch',
      '  2. Install Python PyTorch (its CMake files are used):',
      '       pip install torch',
      '  3. On Debian/Ubuntu, install the system libtorch:',
      '       sudo apt-get install libtorch-dev libgloo-dev libjpeg-dev libdnnl-dev libopenblas0-openmp',
      `  4. Download the pinned build yourself and unzip it into the cache (${p.variant} variant):`,
      `       mkdir -p ${folder} && cd ${folder}`,
      `       curl -fL -o libtorch.zip '${p.url}'`,
      `       echo '${p.sha256}  libtorch.zip' | sha256sum -c -`,
      `       unzip -q libtorch.zip && rm libtorch.zip   # creates ${path.join(folder, 'libtorch')}`,
      '     (XCEPTION_TORCH_VARIANT=cpu|cuda picks the variant; XCEPTION_TORCH_CACHE moves the cache.)',
      '  5. Download from a mirror or another version:',
      '       export XCEPTION_TORCH_LIBTORCH_URL=https://mirror.example/libtorch.zip',
      '       export XCEPTION_TORCH_LIBTORCH_SHA256=<sha256 of that zip>',
    ].join('\n');
  }
}

export async function findLibtorch(opts: FindOptions = {}): Promise<LibtorchLocation> {
  return new Finder(opts).find();
}

if (require.main === module) {
  const json = process.argv.includes('--json');
  findLibtorch().then(
    (loc) => {
      process.stdout.write(json ? `${JSON.stringify(loc)}\n` : `${describeLibtorch(loc)} (from ${loc.source})\n`);
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : String(err));
      process.exit(1);
    },
  );
}

