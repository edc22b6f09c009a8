// The checks of `xception-torch doctor`, each OK or a problem with the command that fixes it. Each
// is quick (no network, no download, at most a `--version` or an import in a child process) and
// catches its own errors: an unexpected environment gives a failed check, never a crash.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { defaultCacheDir } from '../cache-dir';
import { CIFAR10_FOLDER, CIFAR10_URL, missingCifar10Files, resolveCifar10Dir } from '../datasets/cifar10';
import { isDir, isFile } from '../file-kind';
import { BuildInfo, REBUILD_COMMAND } from '../native';
import { PROJECT_ROOT } from '../paths';
import { HTTP_PROXY_VARIABLES, HTTPS_PROXY_VARIABLES, NO_PROXY_VARIABLES, proxyFor } from '../proxy';
import { DEFAULT_PYTHON, PythonReferenceCheck, PYTHON_REFERENCE_IMPORT, PYTHON_REFERENCE_INSTALL, PYTHON_REFERENCE_MODULES, PYTHON_VARIABLE } from '../python-reference';
import type { RuntimeInfo } from '../runtime';

export interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** The command that fixes the problem, when there is one. */
  fix?: string;
}

export type CheckResult = Omit<DoctorCheck, 'name'>;

/** Runs one check; an exception becomes a failed check that says what went wrong. */
export function runCheck(name: string, check: () => CheckResult): DoctorCheck {
  try {
    return { name, ...check() };
  } catch (error) {
    return { name, ok: false, detail: `the check itself failed: ${firstLine(error)}` };
  }
}

export function firstLine(error: unknown): string {
  return String(error instanceof Error ? error.message : error).split('\n')[0];
}

/** The toolchain and libraries the native build needs (README: Install and run). */
export const TOOLCHAIN_INSTALL = 'sudo apt-get install -y g++ cmake make';
export const GLOO_INSTALL = 'sudo apt-get install -y libgloo-dev';
export const CIFAR10_DOWNLOAD = 'npx xception-torch download';

/** `text` as one word of a POSIX shell command line. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/** A proxy setting with any user name and password (everything between the scheme and the last '@') masked. */
export function maskCredentials(value: string): string {
  const at = value.lastIndexOf('@');
  if (at < 0) return value;
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(value)?.[0] ?? '';
  const credentials = value.slice(scheme.length, at);
  return `${scheme}${credentials.includes(':') ? '***:***' : '***'}@${value.slice(at + 1)}`;
}

// ---- native addon and libtorch -------------------------------------------------------------------

/** Whether the addon loads; `info` is runtimeInfo() or what it threw. */
export function addonCheck(info: RuntimeInfo | Error): CheckResult {
  if (info instanceof Error) return { ok: false, detail: `does not load: ${firstLine(info)}`, fix: REBUILD_COMMAND };
  return { ok: true, detail: `loads; libtorch ${info.libtorchVersion}${info.builtWithCuda ? ' (CUDA build)' : ''}` };
}

/** Whether the libtorch recorded in build/libtorch.json is still where the build found it. */
export function libtorchCheck(built: BuildInfo | undefined): CheckResult {
  if (!built) {
    return { ok: false, detail: 'no build/libtorch.json: unknown which libtorch the addon was built against', fix: REBUILD_COMMAND };
  }
  const what = `libtorch ${built.version ?? '(version unknown)'} (found via ${built.source})`;
  // Where CMake looks for TorchConfig.cmake under a CMAKE_PREFIX_PATH entry.
  const configs = ['Torch', path.join('share', 'cmake', 'Torch'), path.join('lib', 'cmake', 'Torch')]
    .map((dir) => path.join(built.prefixPath, dir, 'TorchConfig.cmake'));
  const gone = built.root !== undefined && !isDir(built.root) ? built.root : configs.some(isFile) ? undefined : built.prefixPath;
  if (gone !== undefined) {
    const reinstall = built.source === 'system' || built.source === 'apt' ? 'sudo apt-get install -y libtorch-dev && ' : '';
    return {
      ok: false,
      detail: `${what}, which the addon was built against, is gone from ${gone} (no TorchConfig.cmake)`,
      fix: `${reinstall}${REBUILD_COMMAND}`,
    };
  }
  return { ok: true, detail: `${what} at ${built.prefixPath}` };
}

/** The c10d backends of the build; none means it was built without Gloo's headers. */
export function distributedCheck(info: RuntimeInfo | Error): CheckResult {
  const fix = `${GLOO_INSTALL} && ${REBUILD_COMMAND}`;
  if (info instanceof Error) return { ok: false, detail: 'unknown: the native addon does not load', fix: REBUILD_COMMAND };
  if (info.distributedBackends.length === 0) {
    return { ok: false, detail: `no c10d backend: ${info.distributedMissing ?? 'this build has no c10d'}`, fix };
  }
  return { ok: true, detail: `c10d: ${info.distributedBackends.join(', ')}` };
}

// ---- the build toolchain ---------------------------------------------------------------------------

/** The executable `name` would run: itself when it has a slash, else the first match on PATH. */
export function findExecutable(name: string, env: NodeJS.ProcessEnv): string | undefined {
  const executable = (file: string) => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return isFile(file);
    } catch {
      return false;
    }
  };
  if (name.includes('/')) return executable(name) ? path.resolve(name) : undefined;
  if (env.PATH === undefined) return undefined;
  // An empty entry of PATH is the current folder, as the shell reads it.
  for (const dir of env.PATH.split(path.delimiter)) {
    const file = path.join(dir || '.', name);
    if (executable(file)) return file;
  }
  return undefined;
}

/** The first line of `file --version`, or undefined when it does not answer. */
function versionLine(file: string): string | undefined {
  const r = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 3000 });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n').map((l) => l.trim()).find((l) => l !== '');
}

function versionNumber(text: string | undefined): number[] | undefined {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text ?? '');
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function older(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  }
  return false;
}

function where(env: NodeJS.ProcessEnv): string {
  return env.PATH ? `PATH (${env.PATH})` : 'PATH (not set)';
}

/** The C++ compiler CMake would pick: $CXX, else c++, g++ or clang++ on PATH. */
export function compilerCheck(env: NodeJS.ProcessEnv): CheckResult {
  const cxx = env.CXX?.trim();
  if (cxx) {
    const file = findExecutable(cxx.split(/\s+/)[0], env);
    if (!file) return { ok: false, detail: `CXX=${cxx} is not an executable found on ${where(env)}`, fix: `unset CXX && ${TOOLCHAIN_INSTALL}` };
    return { ok: true, detail: `${file} (CXX): ${versionLine(file) ?? 'version unknown'}` };
  }
  for (const name of ['c++', 'g++', 'clang++']) {
    const file = findExecutable(name, env);
    if (file) return { ok: true, detail: `${file}: ${versionLine(file) ?? 'version unknown'}` };
  }
  return { ok: false, detail: `no C++ compiler (c++, g++, clang++) on ${where(env)}`, fix: TOOLCHAIN_INSTALL };
}

/** The version CMakeLists.txt asks for in cmake_minimum_required. */
function cmakeMinimum(): number[] | undefined {
  try {
    const text = fs.readFileSync(path.join(PROJECT_ROOT, 'CMakeLists.txt'), 'utf8');
    return versionNumber(/cmake_minimum_required\s*\(\s*VERSION\s+([\d.]+)/i.exec(text)?.[1]);
  } catch {
    return undefined;
  }
}

/** cmake on PATH, at least the version CMakeLists.txt requires. */
export function cmakeCheck(env: NodeJS.ProcessEnv): CheckResult {
  const file = findExecutable('cmake', env);
  if (!file) return { ok: false, detail: `no cmake on ${where(env)}`, fix: TOOLCHAIN_INSTALL };
  const line = versionLine(file);
  const have = versionNumber(line);
  const need = cmakeMinimum();
  if (have && need && older(have, need)) {
    return { ok: false, detail: `${file}: ${line}, older than the ${need.join('.')} CMakeLists.txt requires`, fix: TOOLCHAIN_INSTALL };
  }
  return { ok: true, detail: `${file}: ${line ?? 'version unknown'}` };
}

/** What runs the compiler for CMake (cmake-js takes ninja when there is one, else make). */
export function buildToolCheck(env: NodeJS.ProcessEnv): CheckResult {
  const found = ['ninja', 'make'].map((name) => findExecutable(name, env)).filter((f): f is string => f !== undefined);
  if (found.length === 0) return { ok: false, detail: `neither make nor ninja on ${where(env)}`, fix: TOOLCHAIN_INSTALL };
  return { ok: true, detail: found.map((f) => `${f}: ${versionLine(f) ?? 'version unknown'}`).join('; ') };
}

// ---- folders: the cache and runs/ -------------------------------------------------------------------

function writable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The nearest folder at or above `dir` that exists. */
function existingAncestor(dir: string): string {
  let at = path.resolve(dir);
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/**
 * Whether the current user can write in `dir`, or create it: undefined when so, else the problem
 * and the command that makes it so.
 */
export function folderProblem(dir: string, what: string): CheckResult | undefined {
  const user = '"$(id -un)"';
  if (fs.existsSync(dir)) {
    if (!isDir(dir)) return { ok: false, detail: `${what} ${dir} is not a folder`, fix: `mv ${shellQuote(dir)} ${shellQuote(`${dir}.old`)}` };
    if (!writable(dir)) return { ok: false, detail: `${what} ${dir} is not writable by this user`, fix: `sudo chown -R ${user} ${shellQuote(dir)}` };
    return undefined;
  }
  const parent = existingAncestor(dir);
  if (!isDir(parent) || !writable(parent)) {
    return { ok: false, detail: `${what} ${dir} does not exist and ${parent} is not writable by this user`, fix: `sudo install -d -o ${user} ${shellQuote(dir)}` };
  }
  return undefined;
}

/** The cache folder: where it is, what chose it, whether it can be written. */
export function cacheCheck(env: NodeJS.ProcessEnv): CheckResult {
  const dir = defaultCacheDir(env);
  const chosen = env.XCEPTION_TORCH_CACHE ? 'set by XCEPTION_TORCH_CACHE'
    : env.XDG_CACHE_HOME ? 'under XDG_CACHE_HOME; XCEPTION_TORCH_CACHE moves it' : 'the default; XCEPTION_TORCH_CACHE moves it';
  const problem = folderProblem(dir, 'the cache folder');
  if (problem) return { ...problem, detail: `${problem.detail} (${chosen})` };
  return { ok: true, detail: `${dir} (${chosen}), ${fs.existsSync(dir) ? 'writable' : 'created on first download'}` };
}

/**
 * Whether CIFAR-10 is in the cache and complete (the check ensureCifar10 makes before it downloads).
 * Not downloaded yet is fine (train fetches it on first use); only a broken copy is a problem.
 */
export function cifar10Check(env: NodeJS.ProcessEnv): CheckResult {
  const dir = defaultCacheDir(env);
  const found = resolveCifar10Dir(dir);
  if (!found) {
    return { ok: true, detail: `not downloaded yet (no ${path.join(dir, CIFAR10_FOLDER)}); train and evaluate fetch it (about 170 MB) on first use, or \`${CIFAR10_DOWNLOAD}\` now` };
  }
  const missing = missingCifar10Files(found);
  if (missing.length > 0) {
    // Only a folder of CIFAR-10's own name is removed; the cache itself holds other things.
    const fix = path.basename(found) === CIFAR10_FOLDER ? `rm -rf ${shellQuote(found)} && ${CIFAR10_DOWNLOAD}` : undefined;
    return { ok: false, detail: `${found} is incomplete: ${missing.join(', ')} missing`, fix };
  }
  return { ok: true, detail: `complete in ${found}` };
}

/** `runs/` of the current folder, where train and compare write by default. */
export function runsCheck(cwd: string): CheckResult {
  const dir = path.join(cwd, 'runs');
  const problem = folderProblem(dir, 'the run folder');
  if (problem) return { ...problem, detail: `${problem.detail}; train and compare write there unless given --out` };
  return { ok: true, detail: fs.existsSync(dir) ? `${dir} is writable` : `${dir} does not exist yet; ${existingAncestor(dir)} is writable` };
}

// ---- network settings ----------------------------------------------------------------------------

/** The proxy variables that are set, credentials masked, and the proxy a download would go through. */
export function proxyCheck(env: NodeJS.ProcessEnv): CheckResult {
  const names = [...new Set<string>([...HTTPS_PROXY_VARIABLES, ...HTTP_PROXY_VARIABLES, ...NO_PROXY_VARIABLES])];
  const set = names.filter((name) => (env[name] ?? '').trim() !== '');
  const mask = (text: string) => set.reduce((t, name) => t.split(env[name] as string).join(maskCredentials(env[name] as string)), text);
  const shown = set.map((name) => `${name}=${(NO_PROXY_VARIABLES as readonly string[]).includes(name) ? env[name] : maskCredentials(env[name] as string)}`);
  const settings = shown.length ? shown.join(', ') : 'no proxy variables set';
  try {
    const choice = proxyFor(new URL(CIFAR10_URL), env);
    const route = choice ? `downloads go through ${maskCredentials(choice.url.href).replace(/\/$/, '')} (${choice.variable})` : 'downloads connect directly';
    return { ok: true, detail: `${route}; ${settings}` };
  } catch (error) {
    const message = mask(firstLine(error));
    const variable = set.find((name) => message.startsWith(`${name} `));
    const fix = variable === undefined ? undefined
      : variable.startsWith('npm_config_') ? `npm config delete ${variable.slice('npm_config_'.length).replace(/_/g, '-')}`
        : `unset ${variable}`;
    return { ok: false, detail: `${message}; ${settings}`, fix };
  }
}

// ---- the Python reference of the parity tests -------------------------------------------------

export function pythonCheck(python: string, result: PythonReferenceCheck): CheckResult {
  if (result.ok) return { ok: true, detail: `${python}: ${result.versions}` };
  const modules = PYTHON_REFERENCE_MODULES.join(' and ');
  const what = result.notFound ? 'no such interpreter' : `${modules} not found`;
  // The Debian packages serve /usr/bin/python3 (and install it); another interpreter gets them from pip.
  const fix = python === DEFAULT_PYTHON ? PYTHON_REFERENCE_INSTALL
    : result.notFound ? `unset ${PYTHON_VARIABLE}` : `${shellQuote(python)} -m pip install ${PYTHON_REFERENCE_MODULES.join(' ')}`;
  return {
    ok: false,
    detail: `${python}: ${what} (${result.why}); npm test's parity tests \`${PYTHON_REFERENCE_IMPORT}\` there (${PYTHON_VARIABLE} picks the interpreter)`,
    fix,
  };
}
