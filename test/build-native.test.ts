// The native build's handling of what a PyTorch 2.x user brings, checked without CUDA or PyTorch
// 2.x: the CUDA toolkit a CUDA libtorch needs at configure time (found, passed to CMake, or a clear
// error with the fix), the nvToolsExt stand-in for toolkits from 12.9 on, when CMake must start
// afresh, and cmake/LinkLibtorch.cmake itself built against fake libtorch prefixes (the ABI flag,
// libtorch_cuda kept, the toolkit's libcudart not recorded).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cmakeJsCommand } from '../scripts/build-native';
import { cudaBuildSettings, findCudaToolkit, libtorchCudaVersion } from '../scripts/cuda-toolkit';
import type { LibtorchLocation } from '../scripts/download-libtorch';
import { loadedBlas, loadedCudaLibraries } from '../lib/runtime';

jest.setTimeout(120_000);

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-build-native-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(file: string, text: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode });
}

/** A fake toolkit: bin/nvcc that prints a release, and optionally libnvToolsExt. */
function fakeToolkit(root: string, opts: { release: string; nvToolsExt?: boolean; versionJson?: string }): string {
  write(path.join(root, 'bin', 'nvcc'), `#!/bin/sh\necho "Cuda compilation tools, release ${opts.release}, V${opts.release}.1"\n`, 0o755);
  if (opts.nvToolsExt) write(path.join(root, 'targets', 'x86_64-linux', 'lib', 'libnvToolsExt.so.1'), '');
  if (opts.versionJson) write(path.join(root, 'version.json'), JSON.stringify({ cuda: { name: 'CUDA SDK', version: opts.versionJson } }));
  return root;
}

/** A fake CUDA libtorch (a Python install's cmake folder), whose config may link CUDA::nvToolsExt. */
function fakeCudaLibtorch(dir: string, version: string, linksNvToolsExt: boolean): LibtorchLocation {
  write(path.join(dir, 'Torch', 'TorchConfig.cmake'), '# fake\n');
  write(path.join(dir, 'Caffe2', 'public', 'cuda.cmake'),
    linksNvToolsExt ? 'set_property(TARGET torch::nvtoolsext PROPERTY INTERFACE_LINK_LIBRARIES CUDA::nvToolsExt)\n' : '# nvtx3 only\n');
  return { source: 'python', prefixPath: dir, version, cuda: true };
}

const noDefaults = { defaults: [] as string[] };

describe('the CUDA toolkit of a CUDA libtorch', () => {
  it('a CPU libtorch needs none', () => {
    expect(cudaBuildSettings({ source: 'system', prefixPath: '/usr/lib/cmake', cuda: false }, { env: {}, ...noDefaults })).toBeUndefined();
  });

  it('is taken from CUDA_HOME and passed to CMake explicitly', () => {
    const root = fakeToolkit(path.join(tmp, 'cuda-12.4'), { release: '12.4', nvToolsExt: true });
    const libtorch = fakeCudaLibtorch(path.join(tmp, 'torch-cmake'), '2.5.1+cu124', true);
    const s = cudaBuildSettings(libtorch, { env: { CUDA_HOME: root }, ...noDefaults })!;
    expect(s.toolkit).toMatchObject({ root, version: '12.4', from: 'CUDA_HOME', hasNvToolsExt: true });
    expect(s.args).toEqual([
      `--CDCUDAToolkit_ROOT=${root}`, `--CDCMAKE_CUDA_COMPILER=${path.join(root, 'bin', 'nvcc')}`, `--CDCUDA_TOOLKIT_ROOT_DIR=${root}`,
    ]);
    expect(s.notes[0]).toContain(`CUDA toolkit 12.4 at ${root} (from CUDA_HOME)`);
  });

  it('XCEPTION_TORCH_CUDA_HOME wins over CUDA_HOME; version.json over nvcc; nvcc on PATH when nothing is set', () => {
    const a = fakeToolkit(path.join(tmp, 'a'), { release: '12.1' });
    const b = fakeToolkit(path.join(tmp, 'b'), { release: '12.8', versionJson: '12.8.93' });
    expect(findCudaToolkit({ env: { CUDA_HOME: a, XCEPTION_TORCH_CUDA_HOME: b }, ...noDefaults })).toMatchObject({ root: b, version: '12.8' });
    expect(findCudaToolkit({ env: { PATH: `/nonexistent:${path.join(a, 'bin')}` }, ...noDefaults })).toMatchObject({ root: a, from: 'PATH', version: '12.1' });
    expect(findCudaToolkit({ env: {}, ...noDefaults })).toBeUndefined();
    expect(findCudaToolkit({ env: {}, defaults: [b] })).toMatchObject({ root: b });
  });

  it('a variable naming something that is not a toolkit is an error, not silently skipped', () => {
    expect(() => findCudaToolkit({ env: { CUDA_HOME: tmp }, ...noDefaults })).toThrow(/CUDA_HOME=.* is not a CUDA toolkit: .*bin\/nvcc does not exist/);
  });

  it('with no toolkit, the error comes before CMake and says how to get one', () => {
    const libtorch = fakeCudaLibtorch(path.join(tmp, 'torch-cmake'), '2.9.0+cu130', false);
    let message = '';
    try {
      cudaBuildSettings(libtorch, { env: { PATH: '/nonexistent' }, ...noDefaults });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/is a CUDA build, and its CMake config needs the CUDA toolkit \(nvcc\) at configure time/);
    expect(message).toContain('export CUDA_HOME=');
    expect(message).toContain('(13.0, the version this libtorch was built for)');
    expect(message).toContain('conda install -c nvidia cuda-nvcc=13.0');
    expect(message).toContain('XCEPTION_TORCH_VARIANT=cpu');
  });

  it('a toolkit without libnvToolsExt under a config that links it gets the stand-in, and says why', () => {
    const root = fakeToolkit(path.join(tmp, 'cuda-12.9'), { release: '12.9', nvToolsExt: false });
    const old = fakeCudaLibtorch(path.join(tmp, 'old'), '2.6.0+cu126', true);
    const s = cudaBuildSettings(old, { env: { CUDA_HOME: root }, ...noDefaults })!;
    expect(s.args).toContain('--CDXT_NVTOOLSEXT_SHIM=ON');
    expect(s.notes.join('\n')).toMatch(/links CUDA::nvToolsExt, which CUDA 12.9 no longer ships/);
    // A config that no longer links it, or a toolkit that still ships it, needs nothing.
    expect(cudaBuildSettings(fakeCudaLibtorch(path.join(tmp, 'new'), '2.9.0+cu129', false), { env: { CUDA_HOME: root }, ...noDefaults })!.args)
      .not.toContain('--CDXT_NVTOOLSEXT_SHIM=ON');
    const withLib = fakeToolkit(path.join(tmp, 'cuda-12.6'), { release: '12.6', nvToolsExt: true });
    expect(cudaBuildSettings(old, { env: { CUDA_HOME: withLib }, ...noDefaults })!.args).not.toContain('--CDXT_NVTOOLSEXT_SHIM=ON');
  });

  it('warns when the toolkit is of another CUDA major version than the libtorch', () => {
    const root = fakeToolkit(path.join(tmp, 'cuda-11.8'), { release: '11.8', nvToolsExt: true });
    const s = cudaBuildSettings(fakeCudaLibtorch(path.join(tmp, 't'), '2.9.0+cu130', false), { env: { CUDA_HOME: root }, ...noDefaults })!;
    expect(s.notes.join('\n')).toMatch(/built for CUDA 13.0 but the toolkit is 11.8/);
    expect(libtorchCudaVersion('2.5.1+cu124')).toBe('12.4');
    expect(libtorchCudaVersion('2.5.1+cpu')).toBeUndefined();
  });
});

describe('when CMake starts afresh', () => {
  const base = { source: 'python' as const, prefixPath: '/venv/torch/share/cmake', version: '2.5.1+cu124', cuda: true };
  it('an incremental build for the same libtorch, a fresh configure when its version or the toolkit changed', () => {
    expect(cmakeJsCommand(undefined, base)).toBe('rebuild');
    expect(cmakeJsCommand({ ...base }, base)).toBe('build');
    // pip install --upgrade torch keeps the folder and changes the version.
    expect(cmakeJsCommand({ ...base, version: '2.4.0+cu121' }, base)).toBe('rebuild');
    expect(cmakeJsCommand({ ...base, prefixPath: '/other' }, base)).toBe('rebuild');
    expect(cmakeJsCommand({ ...base, cudaToolkit: { root: '/usr/local/cuda-12.1' } }, { ...base, cudaToolkit: { root: '/usr/local/cuda-12.4' } })).toBe('rebuild');
  });
});

// ---- cmake/LinkLibtorch.cmake against fake prefixes -------------------------------------------

const REPO = path.join(__dirname, '..');

function run(cmd: string, args: string[], cwd?: string): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

/** A shared library exporting `symbol`, with its own soname. */
function fakeLibrary(dir: string, name: string, symbol: string): string {
  const source = path.join(dir, `${name}.c`);
  write(source, `int ${symbol}(void) { return 1; }\n`);
  const file = path.join(dir, `lib${name}.so`);
  const r = run('cc', ['-shared', '-fPIC', `-Wl,-soname,lib${name}.so`, '-o', file, source]);
  if (r.status !== 0) throw new Error(r.out);
  return file;
}

/** A libtorch prefix with Torch/TorchConfig.cmake defining torch (and torch_cuda -> cudart). */
function fakePrefix(dir: string, opts: { abi: 0 | 1; cuda: boolean; linksNvToolsExt?: boolean }): string {
  const lib = path.join(dir, 'lib');
  fs.mkdirSync(lib, { recursive: true });
  const torch = fakeLibrary(lib, 'torch', 'xt_fake_torch');
  const lines = [
    `add_library(torch SHARED IMPORTED)`,
    `set_target_properties(torch PROPERTIES IMPORTED_LOCATION "${torch}")`,
    `set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=${opts.abi}")`,
    `set(TORCH_LIBRARIES torch)`,
  ];
  if (opts.cuda) {
    const cudart = fakeLibrary(lib, 'cudart', 'cudaFakeRuntime');
    const torchCuda = fakeLibrary(lib, 'torch_cuda', 'xt_fake_torch_cuda');
    lines.push(
      `add_library(fake_cudart SHARED IMPORTED)`,
      `set_target_properties(fake_cudart PROPERTIES IMPORTED_LOCATION "${cudart}")`,
      `add_library(torch_cuda SHARED IMPORTED)`,
      `set_target_properties(torch_cuda PROPERTIES IMPORTED_LOCATION "${torchCuda}" INTERFACE_LINK_LIBRARIES "fake_cudart${opts.linksNvToolsExt ? ';CUDA::nvToolsExt' : ''}")`,
      `set(TORCH_LIBRARIES torch torch_cuda)`,
    );
  }
  write(path.join(dir, 'Torch', 'TorchConfig.cmake'), lines.join('\n') + '\n');
  return dir;
}

function buildAddon(prefix: string, abi: 0 | 1, extra: string[] = []): { status: number | null; out: string; needed: string[] } {
  const build = path.join(tmp, `build-${path.basename(prefix)}`);
  const configure = run('cmake', ['-S', path.join(REPO, 'test', 'cmake', 'link-check'), '-B', build, `-DXT_REPO=${REPO}`,
    `-DCMAKE_PREFIX_PATH=${prefix}`, `-DEXPECTED_ABI=${abi}`, ...extra]);
  if (configure.status !== 0) return { ...configure, needed: [] };
  const make = run('cmake', ['--build', build]);
  if (make.status !== 0) return { ...make, needed: [] };
  const elf = run('readelf', ['-d', path.join(build, 'libaddon.so')]);
  const needed = [...elf.out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  return { status: 0, out: `${configure.out}\n${make.out}`, needed };
}

// cmake, a C/C++ compiler and readelf are what the addon's own build needs.
describe('cmake/LinkLibtorch.cmake', () => {
  it.each([0, 1] as const)('compiles with the ABI flag of the prefix (_GLIBCXX_USE_CXX11_ABI=%i)', (abi) => {
    const r = buildAddon(fakePrefix(path.join(tmp, `cpu-abi${abi}`), { abi, cuda: false }), abi);
    expect(r.out).not.toMatch(/static assertion failed/);
    expect(r.status).toBe(0);
    expect(r.needed).toContain('libtorch.so');
  });

  it('a CUDA prefix: libtorch_cuda is recorded although unused, the toolkit\'s libcudart is not', () => {
    const r = buildAddon(fakePrefix(path.join(tmp, 'cuda'), { abi: 1, cuda: true }), 1);
    expect(r.status).toBe(0);
    expect(r.needed).toEqual(expect.arrayContaining(['libtorch.so', 'libtorch_cuda.so']));
    expect(r.needed).not.toContain('libcudart.so');
  });

  it('a config linking CUDA::nvToolsExt fails without the stand-in and builds with it', () => {
    const prefix = fakePrefix(path.join(tmp, 'cuda-nvtx'), { abi: 0, cuda: true, linksNvToolsExt: true });
    const without = buildAddon(prefix, 0);
    expect(without.status).not.toBe(0);
    expect(without.out).toMatch(/CUDA::nvToolsExt/);
    fs.rmSync(path.join(tmp, 'build-cuda-nvtx'), { recursive: true, force: true });
    const withShim = buildAddon(prefix, 0, ['-DXT_NVTOOLSEXT_SHIM=ON']);
    expect(withShim.status).toBe(0);
    expect(withShim.out).toContain('standing in an empty CUDA::nvToolsExt');
  });
});

describe('the CUDA libraries doctor lists', () => {
  it('are read from the process maps: PyTorch\'s own or a toolkit\'s, each once', () => {
    const maps = [
      '7f00-7f01 r-xp 00000000 08:01 1 /venv/lib/python3.12/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12',
      '7f01-7f02 r--p 00001000 08:01 1 /venv/lib/python3.12/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12',
      '7f02-7f03 r-xp 00000000 08:01 2 /venv/lib/python3.12/site-packages/torch/lib/libtorch_cuda.so',
      '7f03-7f04 r-xp 00000000 08:01 3 /usr/local/cuda-12.4/lib64/libnvrtc.so.12.4.127',
      '7f04-7f05 r-xp 00000000 08:01 4 /usr/lib/x86_64-linux-gnu/libc.so.6',
      '7f05-7f06 rw-p 00000000 00:00 0 [heap]',
    ].join('\n');
    expect(loadedCudaLibraries(maps)).toEqual([
      '/usr/local/cuda-12.4/lib64/libnvrtc.so.12.4.127',
      '/venv/lib/python3.12/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12',
      '/venv/lib/python3.12/site-packages/torch/lib/libtorch_cuda.so',
    ]);
    // This CPU-only process has none.
    expect(loadedCudaLibraries()).toEqual([]);
  });
});

describe('the BLAS doctor names', () => {
  const maps = (file: string) => `7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n7f01-7f02 r-xp 00000000 08:01 2 ${file}\n`;
  it('is read from the process maps: Debian\'s libblas alternative, or OpenBLAS, MKL', () => {
    expect(loadedBlas(maps('/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0'))).toBe('reference');
    expect(loadedBlas(maps('/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3'))).toBe('openblas-openmp');
    expect(loadedBlas(maps('/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so'))).toBe('openblas-pthread');
    expect(loadedBlas(maps('/opt/lib/libopenblas.so.0'))).toBe('openblas');
    expect(loadedBlas(maps('/venv/lib/libmkl_intel_lp64.so.2'))).toBe('mkl');
    expect(loadedBlas(maps('/usr/lib/x86_64-linux-gnu/libjpeg.so.62'))).toBeUndefined();
  });
});
