// Builds the native addon with cmake-js against the libtorch that download-libtorch.ts finds,
// and records which one in build/libtorch.json (lib/native.ts quotes it when loading fails).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import { readBuildInfo } from '../lib/native';
import { BUILD_DIR, BUILD_INFO_PATH as BUILD_INFO, PROJECT_ROOT } from '../lib/paths';
import { findLibtorch, LibtorchLocation } from './download-libtorch';

export interface BuildInfo extends LibtorchLocation {
  builtAt: string;
}

export async function buildNative(): Promise<BuildInfo> {
  const libtorch = await findLibtorch();
  console.error(`xception-torch: building the native addon against libtorch ${libtorch.version ?? ''} (${libtorch.prefixPath})`);
  // A different libtorch needs a fresh CMake cache; otherwise an incremental build is enough.
  const before = readBuildInfo(BUILD_INFO);
  const command = before && before.prefixPath === libtorch.prefixPath ? 'build' : 'rebuild';
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const args = [
    cmakeJs, command,
    '--directory', PROJECT_ROOT,
    '--out', BUILD_DIR,
    '--parallel', String(Math.max(1, os.cpus().length)),
    `--CDCMAKE_PREFIX_PATH=${libtorch.prefixPath}`,
  ];
  const result = spawnSync(process.execPath, args, { cwd: PROJECT_ROOT, stdio: 'inherit' });
  if (result.status !== 0) {
    throw new Error(`the native build failed (cmake-js ${command} exited with ${result.status ?? result.signal}); the compiler output is above`);
  }
  const info: BuildInfo = { ...libtorch, builtAt: new Date().toISOString() };
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
