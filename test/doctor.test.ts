// `xception-torch doctor` as a user runs it (the compiled dist/lib/cli.js): in environments made to
// fail one check at a time (a PATH without cmake, a read-only folder, a proxy with credentials, an
// empty or incomplete cache), it names the problem, the command that fixes it, and exits 1.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  addonCheck, distributedCheck, libtorchCheck, maskCredentials, pythonCheck, runCheck, shellQuote, TOOLCHAIN_INSTALL,
} from '../lib/commands/doctor-checks';
import { CIFAR10_FOLDER, CIFAR10_META_FILE, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES } from '../lib/datasets/cifar10';
import { REBUILD_COMMAND } from '../lib/native';
import type { RuntimeInfo } from '../lib/runtime';
import { clearProxyVariables } from './helpers/proxy-server';

// Each run gets exactly the proxy variables a test sets.
clearProxyVariables();

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const CHECK_NAMES = [
  'native addon', 'libtorch', 'data-parallel', 'C++ compiler', 'CMake', 'build tool', 'cache folder', 'CIFAR-10', 'proxy',
  'runs folder', 'Python reference',
];

interface Check { name: string; ok: boolean; detail: string; fix?: string }
interface Report { version: string; libtorchVersion?: string; cudaAvailable?: boolean; builtWithCuda?: boolean; ok: boolean; checks: Check[] }

const made: string[] = [];
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of made) {
    fs.chmodSync(dir, 0o755);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A cache holding CIFAR-10's folder with every file (empty: the check looks for the files), or all but `without`. */
function cifarCache(without?: string): string {
  const cache = tempDir('xt-doctor-cache-');
  const folder = path.join(cache, CIFAR10_FOLDER);
  fs.mkdirSync(folder);
  for (const file of [...CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE]) {
    if (file !== without) fs.writeFileSync(path.join(folder, file), '');
  }
  return cache;
}

const COMPLETE_CACHE = cifarCache();

interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  uid?: number;
  args?: string[];
}

function doctor(o: RunOptions = {}) {
  const env: NodeJS.ProcessEnv = { ...process.env, XCEPTION_TORCH_CACHE: COMPLETE_CACHE };
  for (const [name, value] of Object.entries(o.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  const r = spawnSync(process.execPath, [CLI, 'doctor', ...(o.args ?? ['--json'])], {
    encoding: 'utf8', env, cwd: o.cwd ?? tempDir('xt-doctor-cwd-'), ...(o.uid === undefined ? {} : { uid: o.uid, gid: o.uid }),
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function report(o: RunOptions = {}): { code: number | null; report: Report; stdout: string } {
  const r = doctor(o);
  expect(r.stderr).toBe('');
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stdout: r.stdout };
}

const check = (r: Report, name: string): Check => {
  const found = r.checks.find((c) => c.name === name);
  if (!found) throw new Error(`no check '${name}' in ${JSON.stringify(r.checks.map((c) => c.name))}`);
  return found;
};

/** A folder of symbolic links to the executables of PATH named `names` that exist. */
function pathWith(names: string[]): string {
  const dir = tempDir('xt-doctor-path-');
  for (const name of names) {
    for (const from of (process.env.PATH ?? '').split(path.delimiter)) {
      if (from && fs.existsSync(path.join(from, name))) {
        fs.symlinkSync(path.join(from, name), path.join(dir, name));
        break;
      }
    }
  }
  return dir;
}

describe('xception-torch doctor on this machine', () => {
  it('shows the runtime as before, every check passes with CIFAR-10 in the cache, and it exits 0', () => {
    const text = doctor({ args: [] });
    expect({ code: text.code, stderr: text.stderr }).toEqual({ code: 0, stderr: '' });
    for (const label of ['libtorch', 'libtorch path', 'CUDA', 'cuDNN', 'CUDA devices', 'CPU threads', 'Distributed']) {
      expect(text.stdout).toMatch(new RegExp(`^${label}\\s+\\S`, 'm'));
    }
    // This machine's build has Gloo (CI installs libgloo-dev): data-parallel training on the CPU.
    expect(text.stdout).toMatch(/^Distributed\s+c10d: gloo/m);
    for (const name of CHECK_NAMES) expect(text.stdout).toMatch(new RegExp(`^ok\\s+${name.replace(/\+/g, '\\+')}\\s+\\S`, 'm'));
    expect(text.stdout).toMatch(/^all 11 checks passed$/m);

    const { code, report: json } = report();
    expect(code).toBe(0);
    expect(json.libtorchVersion).toMatch(/^\d+\.\d+/);
    // Without a GPU, doctor says why: a CPU-only libtorch, or a CUDA build that sees no GPU.
    if (!json.cudaAvailable) {
      expect(text.stdout).toMatch(json.builtWithCuda ? /^CUDA\s+not available \(CUDA build, but no GPU is visible\)/m : /^CUDA\s+not available \(CPU-only libtorch\)/m);
    } else {
      expect(text.stdout).toMatch(/^GPU 0\s+\S/m);
    }
    expect(json.ok).toBe(true);
    expect(json.checks.map((c) => c.name)).toEqual(CHECK_NAMES);
    for (const c of json.checks) expect(c).toEqual({ name: c.name, ok: true, detail: expect.stringMatching(/\S/) });
    expect(check(json, 'CMake').detail).toMatch(/cmake version \d+\.\d+/);
    expect(check(json, 'C++ compiler').detail).toMatch(/\d+\.\d+/);
    expect(check(json, 'Python reference').detail).toMatch(/torch \d+\.\d+.*, torchvision \d+\.\d+/);
    expect(check(json, 'CIFAR-10').detail).toContain(path.join(COMPLETE_CACHE, CIFAR10_FOLDER));
  });

  it('--help says what the exit code means', () => {
    const r = doctor({ args: ['--help'] });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Exit code: 0 when every check passes, 1 when any problem was found/);
  });
});

describe('xception-torch doctor finds each problem and says the command that fixes it', () => {
  it('no cmake on PATH: the CMake check fails with the apt-get command; the compiler is still found', () => {
    const { code, report: r } = report({ env: { PATH: pathWith(['c++', 'g++', 'make', 'ninja']), CXX: undefined } });
    expect(code).toBe(1);
    expect(r.ok).toBe(false);
    expect(check(r, 'CMake')).toMatchObject({ ok: false, detail: expect.stringMatching(/^no cmake on PATH/), fix: 'sudo apt-get install -y g++ cmake make' });
    expect(check(r, 'C++ compiler')).toMatchObject({ ok: true, detail: expect.stringMatching(/\d+\.\d+/) });
    expect(check(r, 'build tool').ok).toBe(true);
  });

  it('an empty PATH: no compiler, cmake, make or ninja, each with the same fix', () => {
    const { code, report: r } = report({ env: { PATH: pathWith([]), CXX: undefined } });
    expect(code).toBe(1);
    for (const name of ['C++ compiler', 'CMake', 'build tool']) expect(check(r, name)).toMatchObject({ ok: false, fix: TOOLCHAIN_INSTALL });
    expect(check(r, 'C++ compiler').detail).toMatch(/no C\+\+ compiler \(c\+\+, g\+\+, clang\+\+\)/);
    // The rest does not need PATH.
    expect(check(r, 'native addon').ok).toBe(true);
    expect(check(r, 'Python reference').ok).toBe(true);
  });

  it('a read-only current folder: runs/ cannot be created, and the fix creates it for this user', () => {
    const dir = tempDir('xt-doctor-ro-');
    fs.chmodSync(dir, 0o555);
    // root writes anywhere: the check is run as nobody there, for whom the folder is read-only.
    const uid = process.getuid?.() === 0 ? 65534 : undefined;
    const { code, report: r } = report({ cwd: dir, uid });
    expect(code).toBe(1);
    expect(check(r, 'runs folder')).toEqual({
      name: 'runs folder', ok: false,
      detail: `the run folder ${path.join(dir, 'runs')} does not exist and ${dir} is not writable by this user; train and compare write there unless given --out`,
      fix: `sudo install -d -o "$(id -un)" ${shellQuote(path.join(dir, 'runs'))}`,
    });
  });

  it('runs/ that is a file, not a folder', () => {
    const dir = tempDir('xt-doctor-cwd-');
    fs.writeFileSync(path.join(dir, 'runs'), 'not a folder');
    const { report: r } = report({ cwd: dir });
    expect(check(r, 'runs folder')).toMatchObject({ ok: false, detail: expect.stringMatching(/runs is not a folder/), fix: `mv ${path.join(dir, 'runs')} ${path.join(dir, 'runs.old')}` });
  });

  it('a writable runs/ passes', () => {
    const dir = tempDir('xt-doctor-cwd-');
    fs.mkdirSync(path.join(dir, 'runs'));
    expect(check(report({ cwd: dir }).report, 'runs folder')).toEqual({ name: 'runs folder', ok: true, detail: `${path.join(dir, 'runs')} is writable` });
  });

  it('a proxy with credentials: shown masked, never in clear, and used for downloads', () => {
    const { code, report: r, stdout } = report({
      env: { HTTPS_PROXY: 'http://alice:s3cret@proxy.example:3128', http_proxy: 'http://bob@proxy.example:8080', NO_PROXY: 'localhost,.internal' },
    });
    expect(code).toBe(0);
    expect(check(r, 'proxy')).toEqual({
      name: 'proxy', ok: true,
      detail: 'downloads go through http://***:***@proxy.example:3128 (HTTPS_PROXY); ' +
        'HTTPS_PROXY=http://***:***@proxy.example:3128, http_proxy=http://***@proxy.example:8080, NO_PROXY=localhost,.internal',
    });
    expect(stdout).not.toMatch(/alice|s3cret|bob/);
  });

  it('a proxy that is not usable: the problem, masked, and the command that removes the setting', () => {
    const { code, report: r, stdout } = report({ env: { https_proxy: 'socks5://carol:hunter2@proxy.example:1080' } });
    expect(code).toBe(1);
    expect(check(r, 'proxy')).toEqual({
      name: 'proxy', ok: false,
      detail: 'https_proxy names a socks5 proxy; only http:// and https:// proxies are supported; https_proxy=socks5://***:***@proxy.example:1080',
      fix: 'unset https_proxy',
    });
    expect(stdout).not.toMatch(/carol|hunter2/);
  });

  it('an empty cache: CIFAR-10 is not downloaded yet, which is no problem (train fetches it)', () => {
    const cache = tempDir('xt-doctor-empty-');
    const { report: r } = report({ env: { XCEPTION_TORCH_CACHE: cache } });
    expect(check(r, 'cache folder')).toEqual({ name: 'cache folder', ok: true, detail: `${cache} (set by XCEPTION_TORCH_CACHE), writable` });
    expect(check(r, 'CIFAR-10')).toEqual({
      name: 'CIFAR-10', ok: true,
      detail: `not downloaded yet (no ${path.join(cache, CIFAR10_FOLDER)}); train and evaluate fetch it (about 170 MB) on first use, or \`npx xception-torch download\` now`,
    });
  });

  it('an incomplete CIFAR-10: the missing files, and the command that fetches it again', () => {
    const cache = cifarCache(CIFAR10_TEST_FILE);
    const folder = path.join(cache, CIFAR10_FOLDER);
    const { code, report: r } = report({ env: { XCEPTION_TORCH_CACHE: cache } });
    expect(code).toBe(1);
    expect(check(r, 'CIFAR-10')).toEqual({
      name: 'CIFAR-10', ok: false, detail: `${folder} is incomplete: ${CIFAR10_TEST_FILE} missing`, fix: `rm -rf ${folder} && npx xception-torch download`,
    });
  });

  it('a cache folder under a read-only folder: the command that creates it for this user', () => {
    const dir = tempDir('xt-doctor-ro-');
    fs.chmodSync(dir, 0o555);
    const cache = path.join(dir, 'cache');
    const uid = process.getuid?.() === 0 ? 65534 : undefined;
    const { report: r } = report({ env: { XCEPTION_TORCH_CACHE: cache }, uid });
    expect(check(r, 'cache folder')).toMatchObject({ ok: false, fix: `sudo install -d -o "$(id -un)" ${cache}` });
  });

  it('a Python without torch, or no such interpreter: the command for that interpreter', () => {
    const dir = tempDir('xt-doctor-py-');
    const fake = path.join(dir, 'python3');
    fs.writeFileSync(fake, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n", { mode: 0o755 });
    const { code, report: r } = report({ env: { XCEPTION_TORCH_PYTHON: fake } });
    expect(code).toBe(1);
    expect(check(r, 'Python reference')).toEqual({
      name: 'Python reference', ok: false,
      detail: `${fake}: torch and torchvision not found (ModuleNotFoundError: No module named 'torch'); npm test's parity tests \`import torch, torchvision\` there (XCEPTION_TORCH_PYTHON picks the interpreter)`,
      fix: `${fake} -m pip install torch torchvision`,
    });
    const missing = path.join(dir, 'no-such-python');
    expect(check(report({ env: { XCEPTION_TORCH_PYTHON: missing } }).report, 'Python reference'))
      .toMatchObject({ ok: false, detail: expect.stringMatching(/no such interpreter \(.*ENOENT\)/), fix: 'unset XCEPTION_TORCH_PYTHON' });
  });

  it('an environment without PATH, HOME or a cache variable still gives every check, never a crash', () => {
    const r = doctor({ env: { PATH: undefined, HOME: undefined, XCEPTION_TORCH_CACHE: undefined, XDG_CACHE_HOME: undefined } });
    expect(r.stderr).toBe('');
    expect((JSON.parse(r.stdout) as Report).checks.map((c) => c.name)).toEqual(CHECK_NAMES);
  });
});

describe('the checks that need a broken build, on made-up inputs', () => {
  const info = (backends: string[]) => ({ libtorchVersion: '2.5.0', builtWithCuda: false, distributedBackends: backends, distributedMissing: backends.length ? undefined : 'no c10d headers' }) as unknown as RuntimeInfo;

  it('the libtorch the addon was built against is gone: reinstall (apt for a system libtorch) and rebuild', () => {
    const gone = path.join(os.tmpdir(), 'xt-doctor-no-such-libtorch');
    expect(libtorchCheck({ source: 'system', prefixPath: gone, version: '1.13.0', builtAt: '' })).toEqual({
      ok: false, detail: `libtorch 1.13.0 (found via system), which the addon was built against, is gone from ${gone} (no TorchConfig.cmake)`,
      fix: `sudo apt-get install -y libtorch-dev && ${REBUILD_COMMAND}`,
    });
    expect(libtorchCheck({ source: 'download', prefixPath: gone, root: gone, builtAt: '' })).toMatchObject({ ok: false, fix: REBUILD_COMMAND });
    expect(libtorchCheck(undefined)).toMatchObject({ ok: false, detail: expect.stringMatching(/no build\/libtorch.json/), fix: REBUILD_COMMAND });
  });

  it('a build without c10d: install libgloo-dev and rebuild', () => {
    expect(distributedCheck(info([]))).toEqual({
      ok: false, detail: 'no c10d backend: no c10d headers', fix: `sudo apt-get install -y libgloo-dev && ${REBUILD_COMMAND}`,
    });
    expect(distributedCheck(info(['gloo', 'nccl']))).toEqual({ ok: true, detail: 'c10d: gloo, nccl' });
  });

  it('an addon that does not load: its error and the rebuild', () => {
    expect(addonCheck(new Error('cannot open shared object file\nmore'))).toEqual({
      ok: false, detail: 'does not load: cannot open shared object file', fix: REBUILD_COMMAND,
    });
  });

  it('/usr/bin/python3 without torch: the apt-get command of the parity tests', () => {
    expect(pythonCheck('/usr/bin/python3', { ok: false, why: "No module named 'torch'" }).fix).toBe('sudo apt-get install -y libtorch-dev python3-torchvision');
  });

  it('a check that throws is a failed check, not a crash', () => {
    expect(runCheck('x', () => {
      throw new Error('EACCES: permission denied\nstack');
    })).toEqual({ name: 'x', ok: false, detail: 'the check itself failed: EACCES: permission denied' });
  });

  it('masks user and password, whatever characters they hold', () => {
    expect(maskCredentials('http://u:p@h:1')).toBe('http://***:***@h:1');
    expect(maskCredentials('http://u:p/a@ss@h:1')).toBe('http://***:***@h:1');
    expect(maskCredentials('token@h:1')).toBe('***@h:1');
    expect(maskCredentials('http://h:1')).toBe('http://h:1');
  });
});
