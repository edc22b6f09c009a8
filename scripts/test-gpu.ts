// `npm run test:gpu`: runs the GPU tests (test/gpu/) with jest where libtorch sees a CUDA GPU; where
// it does not, says why and exits 0 without running them (CI machines have no GPU).
import { spawnSync } from 'child_process';
import * as path from 'path';
import { native } from '../lib/native';
import { PROJECT_ROOT } from '../lib/paths';

function main(): number {
  const info = native().info();
  if (!info.cudaAvailable) {
    const why = info.builtWithCuda
      ? 'the addon was built against a CUDA libtorch, but no GPU is visible'
      : `the addon was built against a CPU-only libtorch (${info.torchVersion}); rebuild it on a CUDA machine with \`npm run build:native\``;
    console.log(`test:gpu: skipped, no CUDA GPU: ${why}.`);
    return 0;
  }
  console.log(`test:gpu: ${info.gpu?.name ?? 'CUDA GPU'}, libtorch ${info.torchVersion}`);
  const jest = require.resolve('jest/bin/jest');
  const r = spawnSync(process.execPath, [jest, '--config', path.join(PROJECT_ROOT, 'jest.gpu.config.js'), '--runInBand', ...process.argv.slice(2)],
    { cwd: PROJECT_ROOT, stdio: 'inherit' });
  return r.status ?? 1;
}

process.exitCode = main();
