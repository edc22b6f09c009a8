/**
 * The CUDA toolkit a CUDA libtorch needs at configure time. A CUDA libtorch's CMake config runs
 * find_package(CUDA)/find_package(CUDAToolkit) and enable_language(CUDA): without nvcc it fails deep
 * inside CMake. This finds the toolkit first, passes it to CMake explicitly, and says what to do
 * when there is none. It also spots the pairing that breaks older configs: a PyTorch release whose
 * config links CUDA::nvToolsExt with a toolkit (12.9 and later) that no longer ships libnvToolsExt.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { isDir, isFile } from '../lib/file-kind';
import type { LibtorchLocation } from './download-libtorch';

export interface CudaToolkit {
  root: string;
  nvcc: string;
  /** 'major.minor' as nvcc or version.json reports it, when known. */
  version?: string;
  /** Where the root came from: an environment variable's name, 'PATH' or a default folder. */
  from: string;
  /** Whether the toolkit still ships libnvToolsExt (CUDA before 12.9). */
  hasNvToolsExt: boolean;
}

export interface CudaBuildSettings {
  /** cmake-js arguments (--CD…) for the configure step. */
  args: string[];
  /** Lines worth telling the user (which toolkit, any workaround applied). */
  notes: string[];
  toolkit: CudaToolkit;
}

export interface ToolkitSearch {
  env?: NodeJS.ProcessEnv;
  /** Default folders to try last; default /usr/local/cuda. */
  defaults?: string[];
  /** Runs `nvcc --version`; default spawnSync. */
  nvccVersion?: (nvcc: string) => string | undefined;
}

function defaultNvccVersion(nvcc: string): string | undefined {
  const r = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : undefined;
}

/** 'major.minor' of a toolkit: version.json (CUDA 11.1+), else `nvcc --version`'s "release X.Y". */
function toolkitVersion(root: string, nvcc: string, run: (nvcc: string) => string | undefined): string | undefined {
  try {
    const json = JSON.parse(fs.readFileSync(path.join(root, 'version.json'), 'utf8')) as { cuda?: { version?: string } };
    const v = /^(\d+)\.(\d+)/.exec(json.cuda?.version ?? '');
    if (v) return `${v[1]}.${v[2]}`;
  } catch {
    // older toolkits have no version.json
  }
  const m = /release (\d+)\.(\d+)/.exec(run(nvcc) ?? '');
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/** libnvToolsExt in the toolkit's library folders (lib64/, lib/, targets/<arch>/lib/). */
function shipsNvToolsExt(root: string): boolean {
  const folders = [path.join(root, 'lib64'), path.join(root, 'lib')];
  const targets = path.join(root, 'targets');
  if (isDir(targets)) for (const arch of fs.readdirSync(targets)) folders.push(path.join(targets, arch, 'lib'));
  return folders.some((dir) => isDir(dir) && fs.readdirSync(dir).some((f) => /^libnvToolsExt\.so/.test(f)));
}

/**
 * The toolkit to build with, from (in order) XCEPTION_TORCH_CUDA_HOME, CUDA_HOME, CUDA_PATH,
 * CUDAToolkit_ROOT, the nvcc on PATH, /usr/local/cuda. A variable that names a folder without
 * bin/nvcc is an error (the user asked for it); a default that does not exist is skipped.
 */
export function findCudaToolkit(search: ToolkitSearch = {}): CudaToolkit | undefined {
  const env = search.env ?? process.env;
  const run = search.nvccVersion ?? defaultNvccVersion;
  const make = (root: string, from: string): CudaToolkit => {
    const nvcc = path.join(root, 'bin', 'nvcc');
    return { root, nvcc, from, version: toolkitVersion(root, nvcc, run), hasNvToolsExt: shipsNvToolsExt(root) };
  };
  for (const name of ['XCEPTION_TORCH_CUDA_HOME', 'CUDA_HOME', 'CUDA_PATH', 'CUDAToolkit_ROOT']) {
    const value = env[name];
    if (!value) continue;
    const root = path.resolve(value);
    if (!isFile(path.join(root, 'bin', 'nvcc'))) {
      throw new Error(`${name}=${value} is not a CUDA toolkit: ${path.join(root, 'bin', 'nvcc')} does not exist. Point it at the toolkit folder (the one holding bin/nvcc), or unset it.`);
    }
    return make(root, name);
  }
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const nvcc = path.join(dir, 'nvcc');
    if (isFile(nvcc)) return make(path.dirname(path.dirname(fs.realpathSync(nvcc))), 'PATH');
  }
  for (const root of search.defaults ?? ['/usr/local/cuda']) {
    if (isFile(path.join(root, 'bin', 'nvcc'))) return make(root, root);
  }
  return undefined;
}

/** The folder holding Torch/TorchConfig.cmake (and Caffe2/) of a located libtorch. */
export function torchCmakeDir(libtorch: LibtorchLocation): string {
  const direct = path.join(libtorch.prefixPath, 'Torch', 'TorchConfig.cmake');
  return isFile(direct) ? libtorch.prefixPath : path.join(libtorch.prefixPath, 'share', 'cmake');
}

/** Whether this libtorch's CMake config links CUDA::nvToolsExt (older 2.x releases do). */
export function configLinksNvToolsExt(libtorch: LibtorchLocation): boolean {
  try {
    return fs.readFileSync(path.join(torchCmakeDir(libtorch), 'Caffe2', 'public', 'cuda.cmake'), 'utf8').includes('CUDA::nvToolsExt');
  } catch {
    return false;
  }
}

/** The CUDA version a libtorch was built for, from its version ('2.9.0+cu130' -> '13.0'). */
export function libtorchCudaVersion(version: string | undefined): string | undefined {
  const m = /\+cu(\d+)(\d)$/.exec(version ?? '');
  return m ? `${m[1]}.${m[2]}` : undefined;
}

/**
 * What a CUDA libtorch's configure step needs, or an error that says how to get it. Undefined for
 * a CPU libtorch.
 */
export function cudaBuildSettings(libtorch: LibtorchLocation, search: ToolkitSearch = {}): CudaBuildSettings | undefined {
  if (!libtorch.cuda) return undefined;
  const toolkit = findCudaToolkit(search);
  const wanted = libtorchCudaVersion(libtorch.version);
  if (!toolkit) {
    throw new Error([
      `libtorch ${libtorch.version ?? ''} at ${libtorch.prefixPath} is a CUDA build, and its CMake config needs the CUDA toolkit (nvcc) at configure time,`,
      'but none was found (looked at XCEPTION_TORCH_CUDA_HOME, CUDA_HOME, CUDA_PATH, CUDAToolkit_ROOT, nvcc on PATH, /usr/local/cuda).',
      'Any one of these fixes it:',
      `  1. Install a CUDA toolkit${wanted ? ` (${wanted}, the version this libtorch was built for)` : ''} and point CUDA_HOME at it:`,
      '       export CUDA_HOME=/usr/local/cuda   # the folder holding bin/nvcc',
      `  2. In a conda environment: conda install -c nvidia cuda-nvcc${wanted ? `=${wanted}` : ''}  (then CUDA_HOME=$CONDA_PREFIX)`,
      '  3. Build the CPU-only addon instead: XCEPTION_TORCH_VARIANT=cpu, or LIBTORCH=/path/to/a/cpu/libtorch',
      'then run: npm run build:native',
    ].join('\n'));
  }
  const args = [
    `--CDCUDAToolkit_ROOT=${toolkit.root}`,
    `--CDCMAKE_CUDA_COMPILER=${toolkit.nvcc}`,
    // Configs of PyTorch 2.0-2.3 still go through FindCUDA.
    `--CDCUDA_TOOLKIT_ROOT_DIR=${toolkit.root}`,
  ];
  const notes = [`CUDA toolkit ${toolkit.version ?? '(version unknown)'} at ${toolkit.root} (from ${toolkit.from})`];
  if (wanted && toolkit.version && wanted.split('.')[0] !== toolkit.version.split('.')[0]) {
    notes.push(`warning: this libtorch was built for CUDA ${wanted} but the toolkit is ${toolkit.version}; if configuring fails, point CUDA_HOME at a ${wanted.split('.')[0]}.x toolkit`);
  }
  if (!toolkit.hasNvToolsExt && configLinksNvToolsExt(libtorch)) {
    args.push('--CDXT_NVTOOLSEXT_SHIM=ON');
    notes.push(
      `libtorch ${libtorch.version ?? ''}'s CMake config links CUDA::nvToolsExt, which CUDA ${toolkit.version ?? ''} no longer ships ` +
        '(from 12.9 on NVTX is header-only); the addon uses no NVTX, so the build stands in an empty target for it. ' +
        'A PyTorch whose config no longer links it, or a toolkit before 12.9, removes the need.',
    );
  }
  return { args, notes, toolkit };
}
