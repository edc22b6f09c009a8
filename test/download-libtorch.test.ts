import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import * as yazl from 'yazl';
import { CommandResult, FindOptions, LIBTORCH_PINS, findLibtorch } from '../scripts/download-libtorch';

const CONFIG = path.join('Torch', 'TorchConfig.cmake');

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-libtorch-'));
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/** A fake libtorch root: the CMake config plus a build-version and/or a version.h. */
function fakeRoot(root: string, opts: { buildVersion?: string; header?: [number, number, number] } = {}): string {
  write(path.join(root, 'share', 'cmake', CONFIG), '# fake TorchConfig.cmake\n');
  if (opts.buildVersion) write(path.join(root, 'build-version'), `${opts.buildVersion}\n`);
  if (opts.header) writeHeader(path.join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'), opts.header);
  return root;
}

function writeHeader(file: string, [major, minor, patch]: [number, number, number]): void {
  write(
    file,
    `#pragma once\n#define TORCH_VERSION_MAJOR ${major}\n#define TORCH_VERSION_MINOR ${minor}\n` +
      `#define TORCH_VERSION_PATCH ${patch}\n#define TORCH_VERSION "${major}.${minor}.${patch}"\n`,
  );
}

/** A fake cmake folder (what Python reports, or /usr/lib/<arch>/cmake): holds Torch/TorchConfig.cmake. */
function fakeCmakeDir(dir: string): string {
  write(path.join(dir, CONFIG), '# fake TorchConfig.cmake\n');
  return dir;
}

type Handler = (args: string[]) => CommandResult;

/** A runCommand that records every call and answers from `handlers` (unknown commands: not found). */
function fakeRunner(handlers: Record<string, Handler> = {}) {
  const calls: string[] = [];
  const run = (cmd: string, args: string[]): CommandResult => {
    calls.push([cmd, ...args].join(' '));
    const handler = handlers[cmd];
    if (!handler) return { status: null, stdout: '', stderr: `spawnSync ${cmd} ENOENT` };
    return handler(args);
  };
  return { run, calls };
}

/** Options that isolate a test from the machine: no real python, system dirs, cache, network or apt. */
function isolated(over: Partial<FindOptions> = {}): FindOptions & { logs: string[] } {
  const logs: string[] = [];
  return {
    env: {},
    pythons: ['python3'],
    systemCmakeDirs: [],
    systemVersionHeader: path.join(tmp, 'no-such-version.h'),
    cacheDir: path.join(tmp, 'cache'),
    download: false,
    apt: false,
    isRoot: false,
    osRelease: '',
    runCommand: fakeRunner().run,
    quiet: true,
    log: (m) => logs.push(m),
    ...over,
    logs,
  };
}

describe('LIBTORCH', () => {
  test('a valid libtorch folder is used, version from build-version', async () => {
    const root = fakeRoot(path.join(tmp, 'libtorch'), { buildVersion: '2.5.1+cpu', header: [2, 4, 0] });
    const o = isolated({ env: { LIBTORCH: root } });
    const loc = await findLibtorch(o);
    expect(loc).toEqual({ source: 'env', prefixPath: root, root, version: '2.5.1+cpu', cuda: false });
    expect(o.logs.some((l) => l.includes(root))).toBe(true);
  });

  test('version from version.h when there is no build-version', async () => {
    const root = fakeRoot(path.join(tmp, 'libtorch'), { header: [2, 3, 1] });
    const loc = await findLibtorch(isolated({ env: { LIBTORCH: root } }));
    expect(loc.source).toBe('env');
    expect(loc.version).toBe('2.3.1');
  });

  test('LIBTORCH pointing at something else is an error, even if other steps would succeed', async () => {
    const notTorch = path.join(tmp, 'empty');
    fs.mkdirSync(notTorch);
    const sys = fakeCmakeDir(path.join(tmp, 'sys'));
    await expect(findLibtorch(isolated({ env: { LIBTORCH: notTorch }, systemCmakeDirs: [sys] }))).rejects.toThrow(
      /LIBTORCH=.*empty points at something that is not libtorch/,
    );
  });

  test('the error suggests the nested libtorch folder of an unzip location', async () => {
    fakeRoot(path.join(tmp, 'unzipped', 'libtorch'));
    await expect(findLibtorch(isolated({ env: { LIBTORCH: path.join(tmp, 'unzipped') } }))).rejects.toThrow(
      `Did you mean LIBTORCH=${path.join(tmp, 'unzipped', 'libtorch')}`,
    );
  });
});

describe('Python PyTorch', () => {
  test('a python whose torch reports an existing cmake folder is used', async () => {
    const cmake = fakeCmakeDir(path.join(tmp, 'site-packages', 'torch', 'share', 'cmake'));
    const runner = fakeRunner({
      python3: (args) => {
        expect(args[0]).toBe('-c');
        expect(args[1]).toContain('torch.utils.cmake_prefix_path');
        return { status: 0, stdout: `${cmake}\n2.5.1+cu121\n1\n`, stderr: '' };
      },
    });
    const loc = await findLibtorch(isolated({ runCommand: runner.run }));
    expect(loc).toEqual({
      source: 'python',
      prefixPath: cmake,
      root: path.join(tmp, 'site-packages', 'torch'),
      version: '2.5.1+cu121',
      cuda: true,
    });
    expect(runner.calls).toHaveLength(1);
  });

  test("Debian's python torch (cmake path does not exist) is skipped for the system libtorch", async () => {
    const sys = fakeCmakeDir(path.join(tmp, 'usr', 'lib', 'x86_64-linux-gnu', 'cmake'));
    const header = path.join(tmp, 'usr', 'include', 'version.h');
    writeHeader(header, [2, 1, 2]);
    const runner = fakeRunner({
      python3: () => ({ status: 0, stdout: '/usr/lib/python3/dist-packages/torch/share/cmake\n2.1.2\n0\n', stderr: '' }),
      '/usr/bin/python3': () => ({ status: 1, stdout: '', stderr: "ModuleNotFoundError: No module named 'torch'" }),
    });
    const o = isolated({
      pythons: ['python3', '/usr/bin/python3'],
      runCommand: runner.run,
      systemCmakeDirs: [path.join(tmp, 'nothing-here'), sys],
      systemVersionHeader: header,
    });
    const loc = await findLibtorch(o);
    expect(loc).toEqual({ source: 'system', prefixPath: sys, version: '2.1.2', cuda: false });
    expect(runner.calls.map((c) => c.split(' ')[0])).toEqual(['python3', '/usr/bin/python3']);
    expect(o.logs.some((l) => l.includes('/usr/lib/python3/dist-packages/torch/share/cmake') && l.includes('skipped'))).toBe(true);
  });

  test('TORCH_CMAKE_PREFIX_PATH is honoured when valid and ignored when not', async () => {
    const cmake = fakeCmakeDir(path.join(tmp, 'torch', 'share', 'cmake'));
    writeHeader(path.join(tmp, 'torch', 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'), [2, 2, 0]);
    const runner = fakeRunner();
    const loc = await findLibtorch(isolated({ env: { TORCH_CMAKE_PREFIX_PATH: cmake }, runCommand: runner.run }));
    expect(loc).toMatchObject({ source: 'python', prefixPath: cmake, version: '2.2.0' });
    expect(runner.calls).toEqual([]);

    const sys = fakeCmakeDir(path.join(tmp, 'sys'));
    const loc2 = await findLibtorch(isolated({ env: { TORCH_CMAKE_PREFIX_PATH: path.join(tmp, 'nope') }, systemCmakeDirs: [sys] }));
    expect(loc2.source).toBe('system');
  });
});

describe('system libtorch', () => {
  test('the first folder with Torch/TorchConfig.cmake wins', async () => {
    const a = path.join(tmp, 'a');
    fs.mkdirSync(a);
    const b = fakeCmakeDir(path.join(tmp, 'b'));
    const c = fakeCmakeDir(path.join(tmp, 'c'));
    const loc = await findLibtorch(isolated({ systemCmakeDirs: [a, b, c] }));
    expect(loc.source).toBe('system');
    expect(loc.prefixPath).toBe(b);
    expect(loc.version).toBeUndefined();
  });
});

describe('cache', () => {
  test('a cached download of the pinned CPU build is used', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const root = fakeRoot(path.join(cacheDir, 'libtorch-2.5.1-cpu', 'libtorch'), { buildVersion: '2.5.1+cpu' });
    const loc = await findLibtorch(isolated({ cacheDir, env: { XCEPTION_TORCH_VARIANT: 'cpu' } }));
    expect(loc).toEqual({ source: 'cache', prefixPath: root, root, version: '2.5.1+cpu', cuda: false });
  });

  test('the variant follows nvidia-smi: a GPU selects the CUDA pin', async () => {
    const cacheDir = path.join(tmp, 'cache');
    fakeRoot(path.join(cacheDir, 'libtorch-2.5.1-cpu', 'libtorch'), { buildVersion: '2.5.1+cpu' });
    const cudaRoot = fakeRoot(path.join(cacheDir, 'libtorch-2.9.0-cuda', 'libtorch'), { buildVersion: '2.9.0+cu130' });
    const gpu = fakeRunner({ 'nvidia-smi': () => ({ status: 0, stdout: 'GPU 0: NVIDIA H100 (UUID: GPU-x)\n', stderr: '' }) });
    const loc = await findLibtorch(isolated({ cacheDir, runCommand: gpu.run }));
    expect(loc).toMatchObject({ source: 'cache', root: cudaRoot, version: '2.9.0+cu130', cuda: true });
    expect(gpu.calls).toContain('nvidia-smi -L');

    const noGpu = fakeRunner();
    const loc2 = await findLibtorch(isolated({ cacheDir, runCommand: noGpu.run }));
    expect(loc2).toMatchObject({ source: 'cache', version: '2.5.1+cpu', cuda: false });
  });

  test('an unknown XCEPTION_TORCH_VARIANT is an error', async () => {
    await expect(findLibtorch(isolated({ env: { XCEPTION_TORCH_VARIANT: 'rocm' } }))).rejects.toThrow(/"cpu" or "cuda"/);
  });
});

describe('download', () => {
  let server: http.Server;
  let base: string;
  let zip: Buffer;
  let zipSha: string;
  // Made once: yazl stamps entries with the current time, so two builds of one zip may differ.
  let notLibtorch: Buffer;
  let hits = 0;

  beforeAll(async () => {
    zip = await makeZip({
      'libtorch/share/cmake/Torch/TorchConfig.cmake': '# fake TorchConfig.cmake\n',
      'libtorch/build-version': '9.9.9+cpu\n',
    });
    zipSha = crypto.createHash('sha256').update(zip).digest('hex');
    notLibtorch = await makeZip({ 'something/else.txt': 'hello' });
    server = http.createServer((req, res) => {
      hits++;
      if (req.url === '/libtorch.zip') {
        res.writeHead(200, { 'Content-Length': zip.length });
        res.end(zip);
      } else if (req.url === '/not-libtorch.zip') {
        res.writeHead(200, { 'Content-Length': notLibtorch.length });
        res.end(notLibtorch);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  beforeEach(() => {
    hits = 0;
  });

  test('downloads, checks, extracts into the cache; the second call is served from the cache', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const env = {
      XCEPTION_TORCH_VARIANT: 'cpu',
      XCEPTION_TORCH_LIBTORCH_URL: `${base}/libtorch.zip`,
      XCEPTION_TORCH_LIBTORCH_SHA256: zipSha,
    };
    const loc = await findLibtorch(isolated({ env, cacheDir, download: true }));
    const folder = `libtorch-custom-${zipSha.slice(0, 12)}-cpu`;
    const root = path.join(cacheDir, folder, 'libtorch');
    expect(loc).toEqual({ source: 'download', prefixPath: root, root, version: '9.9.9+cpu', cuda: false });
    expect(fs.existsSync(path.join(root, 'share', 'cmake', CONFIG))).toBe(true);
    expect(fs.readdirSync(cacheDir)).toEqual([folder]); // no zip, no partial file, no staging folder
    expect(hits).toBe(1);

    const again = await findLibtorch(isolated({ env, cacheDir, download: true }));
    expect(again).toEqual({ ...loc, source: 'cache' });
    expect(hits).toBe(1);
  });

  test('a wrong sha256 falls through to the next step and leaves nothing in the cache', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const sys = path.join(tmp, 'sys');
    const env = {
      XCEPTION_TORCH_VARIANT: 'cpu',
      XCEPTION_TORCH_LIBTORCH_URL: `${base}/libtorch.zip`,
      XCEPTION_TORCH_LIBTORCH_SHA256: 'a'.repeat(64),
    };
    const runner = fakeRunner({
      'apt-get': (args) => {
        if (args[0] === 'install') fakeCmakeDir(sys);
        return { status: 0, stdout: '', stderr: '' };
      },
    });
    const o = isolated({ env, cacheDir, download: true, apt: true, isRoot: true, osRelease: 'ID=debian\n', runCommand: runner.run, systemCmakeDirs: [sys] });
    const loc = await findLibtorch(o);
    expect(hits).toBe(1);
    expect(loc.source).toBe('apt');
    expect(o.logs.some((l) => l.includes('failed') && l.includes('sha256 mismatch'))).toBe(true);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  test('an archive without libtorch inside is rejected', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const bad = notLibtorch;
    const env = {
      XCEPTION_TORCH_VARIANT: 'cpu',
      XCEPTION_TORCH_LIBTORCH_URL: `${base}/not-libtorch.zip`,
      XCEPTION_TORCH_LIBTORCH_SHA256: crypto.createHash('sha256').update(bad).digest('hex'),
    };
    const o = isolated({ env, cacheDir, download: true });
    await expect(findLibtorch(o)).rejects.toThrow(/Could not find libtorch/);
    expect(o.logs.some((l) => l.includes('has no libtorch/share/cmake/Torch/TorchConfig.cmake'))).toBe(true);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
  });

  test('an archive that unpacks to more than the cap is refused and leaves nothing in the cache', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const env = {
      XCEPTION_TORCH_VARIANT: 'cpu',
      XCEPTION_TORCH_LIBTORCH_URL: `${base}/libtorch.zip`,
      XCEPTION_TORCH_LIBTORCH_SHA256: zipSha,
      XCEPTION_TORCH_LIBTORCH_MAX_BYTES: '20',
    };
    const o = isolated({ env, cacheDir, download: true });
    await expect(findLibtorch(o)).rejects.toThrow(/Could not find libtorch/);
    expect(o.logs.some((l) => l.includes('unpacks to more than 20 B'))).toBe(true);
    expect(fs.readdirSync(cacheDir)).toEqual([]);
    // A bad value is refused as such.
    await expect(findLibtorch(isolated({ env: { ...env, XCEPTION_TORCH_LIBTORCH_MAX_BYTES: 'lots' }, cacheDir, download: true })))
      .rejects.toThrow(/XCEPTION_TORCH_LIBTORCH_MAX_BYTES must be a positive number/);
  });

  test('a URL override without its sha256 is an error', async () => {
    await expect(findLibtorch(isolated({ env: { XCEPTION_TORCH_VARIANT: 'cpu', XCEPTION_TORCH_LIBTORCH_URL: `${base}/libtorch.zip` } }))).rejects.toThrow(
      /XCEPTION_TORCH_LIBTORCH_URL and XCEPTION_TORCH_LIBTORCH_SHA256 must be set together/,
    );
    expect(hits).toBe(0);
  });

  test('XCEPTION_TORCH_NO_DOWNLOAD=1 skips the download', async () => {
    const env = {
      XCEPTION_TORCH_VARIANT: 'cpu',
      XCEPTION_TORCH_NO_DOWNLOAD: '1',
      XCEPTION_TORCH_LIBTORCH_URL: `${base}/libtorch.zip`,
      XCEPTION_TORCH_LIBTORCH_SHA256: zipSha,
    };
    const o = isolated({ env });
    delete o.download; // let the environment decide
    await expect(findLibtorch(o)).rejects.toThrow(/Could not find libtorch/);
    expect(hits).toBe(0);
  });
});

describe('apt-get', () => {
  function aptRunner(sysDir: string) {
    return fakeRunner({
      'apt-get': (args) => {
        if (args.join(' ') === 'install -y libtorch-dev libgloo-dev libjpeg-dev libdnnl-dev libopenblas0-openmp') fakeCmakeDir(sysDir);
        return { status: 0, stdout: '', stderr: '' };
      },
    });
  }

  test('as root on Debian/Ubuntu, installs libtorch-dev and uses it', async () => {
    const sys = path.join(tmp, 'usr-lib-cmake');
    const runner = aptRunner(sys);
    const o = isolated({ apt: true, isRoot: true, osRelease: 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n', runCommand: runner.run, systemCmakeDirs: [sys] });
    const loc = await findLibtorch(o);
    expect(loc).toMatchObject({ source: 'apt', prefixPath: sys });
    expect(runner.calls.filter((c) => c.startsWith('apt-get'))).toEqual(['apt-get update', 'apt-get install -y libtorch-dev libgloo-dev libjpeg-dev libdnnl-dev libopenblas0-openmp']);
    expect(o.logs.some((l) => l.includes("Installing Debian's libtorch-dev (and libgloo-dev, Gloo's headers for data-parallel training, libjpeg-dev, for decoding JPEGs natively, libdnnl-dev, for oneDNN inference convolutions, and libopenblas0-openmp, in place of the reference BLAS Debian links) with apt-get (set XCEPTION_TORCH_NO_APT=1 to skip)"))).toBe(true);
  });

  test('XCEPTION_TORCH_NO_APT=1 opts out', async () => {
    const sys = path.join(tmp, 'usr-lib-cmake');
    const runner = aptRunner(sys);
    const o = isolated({ env: { XCEPTION_TORCH_NO_APT: '1' }, isRoot: true, osRelease: 'ID=ubuntu\n', runCommand: runner.run, systemCmakeDirs: [sys] });
    delete o.apt; // let the environment decide
    await expect(findLibtorch(o)).rejects.toThrow(/Could not find libtorch/);
    expect(runner.calls.some((c) => c.startsWith('apt-get'))).toBe(false);
  });

  test('not as a normal user, and not on other distributions', async () => {
    const sys = path.join(tmp, 'usr-lib-cmake');
    for (const over of [
      { isRoot: false, osRelease: 'ID=debian\n' },
      { isRoot: true, osRelease: 'ID=fedora\nID_LIKE="rhel centos"\n' },
    ]) {
      const runner = aptRunner(sys);
      await expect(findLibtorch(isolated({ apt: true, runCommand: runner.run, systemCmakeDirs: [sys], ...over }))).rejects.toThrow(
        /Could not find libtorch/,
      );
      expect(runner.calls.some((c) => c.startsWith('apt-get'))).toBe(false);
    }
  });

  test('a failed install is reported in the final error', async () => {
    const runner = fakeRunner({
      'apt-get': (args) =>
        args[0] === 'install' ? { status: 100, stdout: '', stderr: 'E: Unable to locate package libtorch-dev' } : { status: 0, stdout: '', stderr: '' },
    });
    await expect(
      findLibtorch(isolated({ apt: true, isRoot: true, osRelease: 'ID=ubuntu\n', runCommand: runner.run })),
    ).rejects.toThrow(/apt-get install -y libtorch-dev libgloo-dev libjpeg-dev libdnnl-dev libopenblas0-openmp failed: E: Unable to locate package libtorch-dev/);
  });
});

describe('nothing found', () => {
  test('the error lists every option with exact commands', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const err = await findLibtorch(isolated({ cacheDir, env: { XCEPTION_TORCH_VARIANT: 'cpu' } })).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain('export LIBTORCH=/path/to/libtorch');
    expect(msg).toContain('pip install torch');
    expect(msg).toContain('sudo apt-get install libtorch-dev');
    expect(msg).toContain(LIBTORCH_PINS.cpu.url);
    expect(msg).toContain(LIBTORCH_PINS.cpu.sha256);
    expect(msg).toContain(path.join(cacheDir, 'libtorch-2.5.1-cpu'));
    expect(msg).toContain('unzip');
    expect(msg).toContain('XCEPTION_TORCH_LIBTORCH_URL=');
    expect(msg).toContain('XCEPTION_TORCH_LIBTORCH_SHA256=');
    // and what was tried
    expect(msg).toContain('LIBTORCH is not set');
    expect(msg).toContain('python3: no usable PyTorch');
  });

  test('with a GPU the error offers the CUDA build', async () => {
    const gpu = fakeRunner({ 'nvidia-smi': () => ({ status: 0, stdout: 'GPU 0: NVIDIA H100\n', stderr: '' }) });
    await expect(findLibtorch(isolated({ runCommand: gpu.run }))).rejects.toThrow(LIBTORCH_PINS.cuda.url);
  });
});

function makeZip(files: Record<string, string>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const z = new yazl.ZipFile();
    for (const [name, text] of Object.entries(files)) z.addBuffer(Buffer.from(text), name);
    const chunks: Buffer[] = [];
    z.outputStream.on('data', (c: Buffer) => chunks.push(c));
    z.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    z.outputStream.on('error', reject);
    z.end();
  });
}

describe('libtorch 2.x layouts', () => {
  test('XCEPTION_TORCH_PYTHON is the first interpreter asked for torch', async () => {
    const cmake = fakeCmakeDir(path.join(tmp, 'venv', 'torch', 'share', 'cmake'));
    const venvPython = path.join(tmp, 'venv', 'bin', 'python');
    const runner = fakeRunner({ [venvPython]: () => ({ status: 0, stdout: `${cmake}\n2.9.0+cu130\n1\n`, stderr: '' }) });
    const loc = await findLibtorch(isolated({ pythons: undefined, env: { XCEPTION_TORCH_PYTHON: venvPython }, runCommand: runner.run }));
    expect(loc).toMatchObject({ source: 'python', prefixPath: cmake, version: '2.9.0+cu130', cuda: true });
    expect(runner.calls[0]).toBe(`${venvPython} -c ${runner.calls[0].split(' -c ')[1]}`);
    expect(runner.calls).toHaveLength(1);
  });

  test('without it, python3 then /usr/bin/python3 are asked', async () => {
    const runner = fakeRunner();
    await expect(findLibtorch(isolated({ pythons: undefined, runCommand: runner.run }))).rejects.toThrow(/Could not find libtorch/);
    expect(runner.calls.filter((c) => c.includes(' -c ')).map((c) => c.split(' ')[0])).toEqual(['python3', '/usr/bin/python3']);
  });

  test('a torch/version.h that only includes torch/headeronly/version.h is followed', async () => {
    const root = fakeRoot(path.join(tmp, 'libtorch'));
    write(path.join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'),
      '#pragma once\n#include <torch/headeronly/version.h>\n');
    writeHeader(path.join(root, 'include', 'torch', 'headeronly', 'version.h'), [2, 10, 1]);
    const loc = await findLibtorch(isolated({ env: { LIBTORCH: root } }));
    expect(loc.version).toBe('2.10.1');
  });

  test.each([
    ['pre-cxx11 (PyTorch 2.5 and most 2.6 wheels)', '0', false],
    ['cxx11 (2.7 on, and every libtorch zip named cxx11-abi)', '1', true],
  ])('the C++ ABI a prefix declares is reported: %s', async (_kind, flag, cxx11) => {
    const cmake = path.join(tmp, 'site-packages', 'torch', 'share', 'cmake');
    write(path.join(cmake, CONFIG), `# fake\nset(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${flag}")\n`);
    const runner = fakeRunner({ python3: () => ({ status: 0, stdout: `${cmake}\n2.6.0+cu124\n1\n`, stderr: '' }) });
    const o = isolated({ runCommand: runner.run });
    const loc = await findLibtorch(o);
    expect(loc.cxx11Abi).toBe(cxx11);
    expect(o.logs.join('\n')).toContain(cxx11 ? 'cxx11 ABI' : 'pre-cxx11 ABI');
  });

  test('the CUDA pin is a current 2.x build (cxx11, CUDA 13)', () => {
    expect(LIBTORCH_PINS.cuda.version).toMatch(/^2\.(9|[1-9]\d)\./);
    expect(LIBTORCH_PINS.cuda.url).toContain(`libtorch-shared-with-deps-${LIBTORCH_PINS.cuda.version}%2Bcu130.zip`);
    expect(LIBTORCH_PINS.cuda.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});
