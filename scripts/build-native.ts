// Builds the native addon with cmake-js against the libtorch that download-libtorch.ts finds (and,
// for a CUDA libtorch, the CUDA toolkit that cuda-toolkit.ts finds), and records which in
// build/libtorch.json (lib/native.ts quotes it when loading fails).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import { BuildInfo, readBuildInfo } from '../lib/native';
import { BUILD_DIR, BUILD_INFO_PATH as BUILD_INFO, PROJECT_ROOT } from '../lib/paths';
import { cudaBuildSettings } from './cuda-toolkit';
import { findLibtorch } from './download-libtorch';

/**
 * 'rebuild' (a fresh CMake cache) unless the last build used the same libtorch — same folder and
 * same version, since upgrading PyTorch in place keeps the folder — and the same CUDA toolkit.
 */
export function cmakeJsCommand(
  before: { prefixPath?: string; version?: string; cudaToolkit?: { root: string } } | undefined, next: Omit<BuildInfo, 'builtAt'>,
): 'build' | 'rebuild' {
  const same = before !== undefined && before.prefixPath === next.prefixPath && before.version === next.version &&
    before.cudaToolkit?.root === next.cudaToolkit?.root;
  return same ? 'build' : 'rebuild';
}

export async function buildNative(): Promise<BuildInfo> {
  const libtorch = await findLibtorch();
  const cuda = cudaBuildSettings(libtorch);
  console.error(`xception-torch: building the native addon against libtorch ${libtorch.version ?? ''} (${libtorch.prefixPath})`);
  for (const note of cuda?.notes ?? []) console.error(`xception-torch: ${note}`);
  const next: Omit<BuildInfo, 'builtAt'> = {
    ...libtorch, ...(cuda && { cudaToolkit: { root: cuda.toolkit.root, version: cuda.toolkit.version } }),
  };
  const command = cmakeJsCommand(readBuildInfo(BUILD_INFO), next);
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const args = [
    cmakeJs, command,
    '--directory', PROJECT_ROOT,
    '--out', BUILD_DIR,
    '--parallel', String(Math.max(1, os.cpus().length)),
    `--CDCMAKE_PREFIX_PATH=${libtorch.prefixPath}`,
    ...(cuda?.args ?? []),
  ];
  const result = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, stdio: 'inherit' });
  if (result.status !== 0) {
    throw new Error(`the native build failed (cmake-js ${command} exited with ${result.status ?? result.signal}); the compiler output is above`);
  }
  const info: BuildInfo = { ...next, builtAt: new Date().toISOString() };
  fs.writeFileSync(BUILD_INFO, JSON.stringify(info, null, 2) + '\n');
  return info;
}

if (require.main === module) {
  buildNative().then(
    (info) => console.error(`xception-torch: native addon built (libtorch ${info.version ?? 'unknown version'} from ${info.source})`),
    (error: Error) => {
      console.error(`xception-torch: ${error.message}`);
      process.exit(1);
    },
  );
}
