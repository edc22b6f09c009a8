// `xception-torch doctor`: what the runtime is (libtorch, CUDA, cuDNN, GPUs, CPU threads, data-parallel
// backends), then whether this machine can build, test and run: each check OK, or a problem with the
// command that fixes it (doctor-checks.ts). Exit code 0 when every check passes, 1 otherwise.
import { readBuildInfo } from '../native';
import { packageVersion } from '../paths';
import { findPythonReference, DEFAULT_PYTHON, PYTHON_VARIABLE, PythonReferenceCheck, referencePython } from '../python-reference';
import { fixed } from '../report/format';
import { RuntimeInfo, runtimeInfo, setNumThreads } from '../runtime';
import {
  addonCheck, buildToolCheck, cacheCheck, cifar10Check, cmakeCheck, compilerCheck, distributedCheck, DoctorCheck, firstLine,
  libtorchCheck, proxyCheck, pythonCheck, runCheck, runsCheck,
} from './doctor-checks';
import { ENVIRONMENT, helpFooter } from './help';

export type { DoctorCheck } from './doctor-checks';

export interface DoctorOptions {
  threads?: number;
  json?: boolean;
}

/** The end of `doctor --help`: examples, the variables it reads, the exit code. */
export const DOCTOR_HELP = `${helpFooter([
  'xception-torch doctor',
  'xception-torch doctor --json # the checks as { name, ok, detail, fix? }',
  'XCEPTION_TORCH_CACHE=/data/cache xception-torch doctor # is CIFAR-10 complete there?',
], [ENVIRONMENT.cache, ENVIRONMENT.proxy, [PYTHON_VARIABLE, `the Python of the parity tests (default ${DEFAULT_PYTHON})`]])}

Exit code: 0 when every check passes, 1 when any problem was found.`;

/** Python finds the modules in a tenth of a second; it runs beside the other checks. */
const PYTHON_TIMEOUT_MS = 5_000;

/**
 * Every check, in the order printed. `python` is the reference interpreter and its answer, started
 * before the addon loads so that the two overlap. Never throws.
 */
export async function doctorChecks(
  info: RuntimeInfo | Error, python: { interpreter: string; answer: Promise<PythonReferenceCheck> },
  env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd(),
): Promise<DoctorCheck[]> {
  const checks = [
    runCheck('native addon', () => addonCheck(info)),
    runCheck('libtorch', () => libtorchCheck(readBuildInfo())),
    runCheck('data-parallel', () => distributedCheck(info)),
    runCheck('C++ compiler', () => compilerCheck(env)),
    runCheck('CMake', () => cmakeCheck(env)),
    runCheck('build tool', () => buildToolCheck(env)),
    runCheck('cache folder', () => cacheCheck(env)),
    runCheck('CIFAR-10', () => cifar10Check(env)),
    runCheck('proxy', () => proxyCheck(env)),
    runCheck('runs folder', () => runsCheck(cwd)),
  ];
  const answer = await python.answer;
  checks.push(runCheck('Python reference', () => pythonCheck(python.interpreter, answer)));
  return checks;
}

/** The runtime as `doctor` has always shown it: one [label, value] pair a line. */
export function runtimeLines(info: RuntimeInfo): Array<[string, string]> {
  const where = info.libtorch ? `${info.libtorch.prefixPath} (found via ${info.libtorch.source})` : 'unknown (no build/libtorch.json)';
  return [
    ['libtorch', info.libtorchVersion],
    ['libtorch path', where],
    ...(info.libtorch?.cxx11Abi === undefined ? [] : [['C++ ABI', info.libtorch.cxx11Abi ? 'cxx11' : 'pre-cxx11'] as [string, string]]),
    ...(info.libtorch?.cudaToolkit ? [['CUDA toolkit', `${info.libtorch.cudaToolkit.version ?? ''} at ${info.libtorch.cudaToolkit.root} (at build time)`] as [string, string]] : []),
    ['CUDA', info.cudaAvailable ? `available${info.cudaVersion ? ` (runtime ${info.cudaVersion})` : ''}`
      : `not available${info.builtWithCuda ? ' (CUDA build, but no GPU is visible)' : ' (CPU-only libtorch)'}`],
    ['cuDNN', info.cudnnAvailable ? `available${info.cudnnVersion ? ` (${info.cudnnVersion})` : ''}` : 'not available'],
    ['CUDA devices', String(info.cudaDeviceCount)],
    ...(info.gpu ? [['GPU 0', `${info.gpu.name}, ${fixed(info.gpu.totalMemoryGiB, 1)} GiB, compute capability ${info.gpu.computeCapability}`] as [string, string]] : []),
    ['CPU threads', `${info.threads} (of ${info.hardwareThreads} hardware threads)`],
    ['Inference convolutions', info.inferenceConvolutions === 'onednn' ? `oneDNN ${info.onednnVersion}, called directly`
      : info.onednnVersion ? 'libtorch (switched off by setInferenceConvolutions)'
        : 'libtorch (the addon was built without libdnnl-dev: apt-get install libdnnl-dev, then rebuild)'],
    ['Training convolutions', info.trainingConvolutions === 'onednn' ? `1x1 as oneDNN ${info.onednnVersion} matrix products, the rest libtorch's`
      : info.onednnVersion ? 'libtorch (switched off by setTrainingConvolutions)' : 'libtorch (the addon was built without libdnnl-dev)'],
    ['Inference passes', info.inferencePasses === 'split'
      ? 'split by batch over the CPU threads, one single-threaded pass each (batches of at least as many images as threads)'
      : 'whole, every layer shared out over the threads (switched by setInferencePasses)'],
    ...(info.blas ? [['BLAS', info.blas === 'reference' ? 'the reference BLAS (slow: 1-thread 1x1 convolutions run through it; apt-get install libopenblas0-openmp)' : info.blas] as [string, string]] : []),
    ['Memory allocator', mallocLine(info.malloc)],
    ['JPEG decoding', info.jpegDecoder === 'libjpeg' ? 'libjpeg, in the addon' : 'sharp (the addon was built without libjpeg-dev: apt-get install libjpeg-dev, then rebuild)'],
    ['Distributed', info.distributedBackends.length ? `c10d: ${info.distributedBackends.join(', ')}` : `not available: ${info.distributedMissing ?? 'no c10d in this build'}`],
    // Which CUDA runtime was really loaded: PyTorch's own (nvidia/*/lib) or a system toolkit's.
    ...info.loadedCudaLibraries.map((file, i): [string, string] => [i === 0 ? 'CUDA libraries' : '', file]),
  ];
}

function mallocLine(m: RuntimeInfo['malloc']): string {
  const mib = (bytes?: number) => `${Math.round((bytes ?? 0) / 2 ** 20)} MiB`;
  switch (m.mode) {
    case 'tuned': return `glibc, thresholds fixed by xception-torch (mmap ${mib(m.mmapThresholdBytes)}, trim ${mib(m.trimThresholdBytes)}, top pad ${mib(m.topPadBytes)}); XCEPTION_TORCH_MALLOC=default leaves glibc's own`;
    case 'environment': return 'glibc, settings from the environment (MALLOC_*_ or GLIBC_TUNABLES)';
    case 'default': return 'glibc, its own dynamic thresholds (XCEPTION_TORCH_MALLOC=default)';
    default: return 'not glibc: left as it is';
  }
}

/** The checks as lines: `ok` or `PROBLEM`, the name, the detail, and under a problem its fix. */
export function checkLines(checks: DoctorCheck[]): string[] {
  const width = Math.max(...checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${(c.ok ? 'ok' : 'PROBLEM').padEnd(8)} ${c.name.padEnd(width)}  ${c.detail}`);
    if (!c.ok && c.fix) lines.push(`${''.padEnd(8 + 1 + width)}  fix: ${c.fix}`);
  }
  const problems = checks.filter((c) => !c.ok).length;
  lines.push('', problems === 0 ? `all ${checks.length} checks passed`
    : `${problems} problem${problems === 1 ? '' : 's'} found (exit code 1)`);
  return lines;
}

/** Runs `doctor`; resolves with the exit code: 0 when every check passed, 1 when one did not. */
export async function runDoctor(opts: DoctorOptions, env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): Promise<number> {
  const version = packageVersion();
  const interpreter = referencePython(env);
  const python = { interpreter, answer: findPythonReference(interpreter, PYTHON_TIMEOUT_MS) };
  let info: RuntimeInfo | Error;
  try {
    if (opts.threads) setNumThreads(opts.threads);
    info = runtimeInfo();
  } catch (error) {
    info = error instanceof Error ? error : new Error(firstLine(error));
  }
  const checks = await doctorChecks(info, python, env, cwd);
  const ok = checks.every((c) => c.ok);
  if (opts.json) {
    const runtime = info instanceof Error ? {} : info;
    console.log(JSON.stringify({ version, node: process.version, ...runtime, ok, checks }, null, 2));
  } else {
    const lines: Array<[string, string]> = [
      ['xception-torch', version],
      ['Node.js', process.version],
      ...(info instanceof Error ? [] : runtimeLines(info)),
    ];
    for (const [k, v] of lines) console.log(`${k.padEnd(15)} ${v}`);
    console.log(['', 'Checks:', ...checkLines(checks)].join('\n'));
  }
  return ok ? 0 : 1;
}
