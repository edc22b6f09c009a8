/**
 * Locates libtorch for the native build, or fetches it.
 *
 * Order: LIBTORCH → Python PyTorch → system libtorch (Debian/Ubuntu libtorch-dev) → cached download →
 * download of a pinned official cxx11-ABI build → `apt-get install libtorch-dev` on Debian/Ubuntu as
 * root → an error listing every option. Each step logs one line.
 *
 * Run as a script it prints the location (`--json` for JSON on stdout) or exits 1 with the reason.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import extract from 'extract-zip';
import { defaultCacheDir } from '../lib/cache-dir';
import { download } from '../lib/download';
import { isFile } from '../lib/file-kind';
import type { LibtorchLocation } from '../lib/native';
import { formatBytes } from '../lib/report/format';

// Defined beside BuildInfo in lib/native.ts (the build records one in build/libtorch.json).
export type { LibtorchLocation };

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

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

export type LibtorchVariant = 'cpu' | 'cuda';

export interface LibtorchPin {
  version: string;
  variant: LibtorchVariant;
  url: string;
  sha256: string;
}

/** Pinned official cxx11-ABI builds. */
export const LIBTORCH_PINS: Readonly<Record<LibtorchVariant, LibtorchPin>> = {
  cpu: {
    version: '2.5.1',
    variant: 'cpu',
    url: 'https://download.pytorch.org/libtorch/cpu/libtorch-cxx11-abi-shared-with-deps-2.5.1%2Bcpu.zip',
    sha256: '618ca54eef82a1dca46ff1993d5807d9c0deb0bae147da4974166a147cb562fa',
  },
  // CUDA 13.0 (cxx11 ABI, as every build from 2.7 on); its checksum is the one nixpkgs records for
  // this archive (libtorch-bin's binary-hashes.nix).
  cuda: {
    version: '2.9.0',
    variant: 'cuda',
    url: 'https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-2.9.0%2Bcu130.zip',
    sha256: 'bbc97b248cb6add93a9f1bfa53136615c7ce55ca63bd99c812be4273354d4434',
  },
};

export const DEFAULT_SYSTEM_CMAKE_DIRS = [
  '/usr/lib/x86_64-linux-gnu/cmake',
  '/usr/lib/aarch64-linux-gnu/cmake',
  '/usr/lib/cmake',
  '/usr/local/lib/cmake',
  '/usr/share/cmake',
];
const DEFAULT_SYSTEM_VERSION_HEADER = '/usr/include/torch/csrc/api/include/torch/version.h';
const VERSION_HEADER = path.join('include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h');
const TORCH_CONFIG = path.join('Torch', 'TorchConfig.cmake');
const PYTHON_PROBE =
  'import torch,sys;print(torch.utils.cmake_prefix_path);print(torch.__version__);print(int(torch.version.cuda is not None))';

function defaultRunCommand(cmd: string, args: string[]): CommandResult {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr || (r.error ? r.error.message : '') };
}

/** The cmake folder (holding Torch/) inside a libtorch root, if any. */
function cmakeDirOfRoot(root: string): string | undefined {
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
function versionOfRoot(root: string): string | undefined {
  try {
    const line = fs.readFileSync(path.join(root, 'build-version'), 'utf8').trim().split('\n')[0]?.trim();
    if (line) return line;
  } catch {
    // no build-version: fall back to the header
  }
  return readVersionHeader(path.join(root, VERSION_HEADER));
}

function cudaOfRoot(root: string, version: string | undefined): boolean {
  if (version && /\+cu\d/.test(version)) return true;
  if (version && /\+cpu/.test(version)) return false;
  return isFile(path.join(root, 'lib', 'libtorch_cuda.so'));
}

function describe(loc: LibtorchLocation): string {
  const version = loc.version ? ` ${loc.version}` : '';
  const cuda = loc.cuda === undefined ? '' : loc.cuda ? ' (CUDA)' : ' (CPU)';
  const abi = loc.cxx11Abi === undefined ? '' : loc.cxx11Abi ? ', cxx11 ABI' : ', pre-cxx11 ABI';
  return `libtorch${version}${cuda}${abi} at ${loc.prefixPath}`;
}

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
    this.run = opts.runCommand ?? defaultRunCommand;
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
    this.log(`using ${describe(withAbi)} (from ${loc.source})`);
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

  /** The build to use from the cache or to download: an override, else the pin of the variant. */
  private pin(): LibtorchPin {
    if (this.pinCache) return this.pinCache;
    const requested = this.env.XCEPTION_TORCH_VARIANT;
    let variant: LibtorchVariant;
    if (requested) {
      if (requested !== 'cpu' && requested !== 'cuda') {
        throw new Error(`XCEPTION_TORCH_VARIANT must be "cpu" or "cuda", not "${requested}".`);
      }
      variant = requested;
    } else {
      const smi = this.run('nvidia-smi', ['-L']);
      variant = smi.status === 0 && /GPU/i.test(smi.stdout) ? 'cuda' : 'cpu';
      this.log(`variant ${variant} (${variant === 'cuda' ? 'nvidia-smi lists a GPU' : 'no GPU found by nvidia-smi'}; set XCEPTION_TORCH_VARIANT to choose)`);
    }
    const url = this.env.XCEPTION_TORCH_LIBTORCH_URL;
    const sha256 = this.env.XCEPTION_TORCH_LIBTORCH_SHA256;
    if (url || sha256) {
      if (!url || !sha256) {
        throw new Error(
          'XCEPTION_TORCH_LIBTORCH_URL and XCEPTION_TORCH_LIBTORCH_SHA256 must be set together ' +
            '(the URL of a libtorch zip and its sha256).',
        );
      }
      const digest = sha256.trim().toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(digest)) {
        throw new Error(`XCEPTION_TORCH_LIBTORCH_SHA256 is not a sha256 (64 hex digits): ${sha256}`);
      }
      const known = Object.values(LIBTORCH_PINS).find((p) => p.sha256 === digest);
      this.pinCache = { version: known ? known.version : `custom-${digest.slice(0, 12)}`, variant, url, sha256: digest };
    } else {
      this.pinCache = LIBTORCH_PINS[variant];
    }
    return this.pinCache;
  }

  private cacheFolder(pin: LibtorchPin): string {
    return path.join(this.cacheDir, `libtorch-${pin.version}-${pin.variant}`);
  }

  private located(source: 'cache' | 'download', root: string, pin: LibtorchPin): LibtorchLocation {
    const version = versionOfRoot(root) ?? pin.version;
    return { source, prefixPath: root, root, version, cuda: pin.variant === 'cuda' || cudaOfRoot(root, version) };
  }

  // d. Cache
  private fromCache(): LibtorchLocation | undefined {
    const pin = this.pin();
    const root = path.join(this.cacheFolder(pin), 'libtorch');
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
    const final = this.cacheFolder(pin);
    const zip = `${final}.${process.pid}.zip`;
    const staging = path.join(this.cacheDir, `.extract-${process.pid}-${Date.now()}`);
    this.log(`downloading libtorch ${pin.version} (${pin.variant}) from ${pin.url} into ${this.cacheDir}`);
    try {
      fs.mkdirSync(this.cacheDir, { recursive: true });
      await download({
        url: pin.url,
        dest: zip,
        sha256: pin.sha256,
        timeoutMs: this.opts.downloadTimeoutMs ?? 15000,
        label: `libtorch ${pin.version} (${pin.variant})`,
        quiet: this.opts.quiet,
      });
      this.log(`extracting ${path.basename(zip)}`);
      // The sizes the archive declares are summed before each entry is written: a zip bomb behind an
      // overridden checksum stops at the cap instead of filling the disk.
      const cap = this.maxExtractBytes();
      let declared = 0;
      await extract(zip, {
        dir: staging,
        onEntry: (entry) => {
          declared += entry.uncompressedSize;
          if (declared > cap) {
            throw new Error(`the archive unpacks to more than ${formatBytes(cap)} (XCEPTION_TORCH_LIBTORCH_MAX_BYTES raises the limit)`);
          }
        },
      });
      if (!isFile(path.join(staging, 'libtorch', 'share', 'cmake', TORCH_CONFIG))) {
        throw new Error(`the archive has no libtorch/share/cmake/${TORCH_CONFIG.split(path.sep).join('/')}`);
      }
      try {
        fs.renameSync(staging, final);
      } catch (err) {
        // Another process may have finished the same download first: use its copy if it is whole.
        if (!isFile(path.join(final, 'libtorch', 'share', 'cmake', TORCH_CONFIG))) throw err;
      }
      return this.located('download', path.join(final, 'libtorch'), pin);
    } catch (err) {
      this.miss(`download of ${pin.url} failed: ${(err as Error).message}`);
      return undefined;
    } finally {
      // extract-zip has settled, so no write is still in flight; retries cover a slow filesystem.
      fs.rmSync(staging, { recursive: true, force: true, maxRetries: 5 });
      fs.rmSync(zip, { force: true });
    }
  }

  private maxExtractBytes(): number {
    if (this.opts.maxExtractBytes !== undefined) return this.opts.maxExtractBytes;
    const text = this.env.XCEPTION_TORCH_LIBTORCH_MAX_BYTES;
    if (text === undefined || text === '') return 32 * 2 ** 30;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`XCEPTION_TORCH_LIBTORCH_MAX_BYTES must be a positive number of bytes; got ${JSON.stringify(text)}`);
    }
    return value;
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
    this.log("Installing Debian's libtorch-dev (and libgloo-dev, Gloo's headers for data-parallel training) with apt-get (set XCEPTION_TORCH_NO_APT=1 to skip); this can take a few minutes...");
    const update = this.run('apt-get', ['update']);
    if (update.status !== 0) this.log(`apt-get update failed (${lastLines(update.stderr, 2) || `exit status ${update.status}`}); trying the install anyway`);
    const install = this.run('apt-get', ['install', '-y', 'libtorch-dev', 'libgloo-dev']);
    if (install.status !== 0) {
      this.miss(`apt-get install -y libtorch-dev libgloo-dev failed: ${lastLines(install.stderr, 3) || `exit status ${install.status}`}`);
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
    const folder = this.cacheFolder(p);
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
      '       sudo apt-get install libtorch-dev libgloo-dev',
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
      process.stdout.write(json ? `${JSON.stringify(loc)}\n` : `${describe(loc)} (from ${loc.source})\n`);
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : String(err));
      process.exit(1);
    },
  );
}
