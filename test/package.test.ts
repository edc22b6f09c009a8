// The package as a user loads it: through its exports map, from CommonJS and from ES modules, and
// without paying for the chart stack (Vega, Vega-Lite, resvg) until `compare` draws figures.
import { spawnSync } from 'child_process';
import * as path from 'path';

const ROOT = path.join(__dirname, '..');

function node(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout.trim(), stderr: r.stderr };
}

describe('the package entry points', () => {
  it('ES modules get named imports', () => {
    const r = node(['--input-type=module', '-e',
      "import { Xception, Trainer, GradScaler, createModel } from 'xception-torch'; console.log([Xception, Trainer, GradScaler, createModel].map((x) => typeof x).join(','));"]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('function,function,function,function');
  });

  it('CommonJS require() resolves the same module, and package.json is reachable', () => {
    const r = node(['-e', "const x = require('xception-torch'); const p = require('xception-torch/package.json'); console.log(typeof x.Trainer, p.name);"]);
    expect(r.stdout).toBe('function xception-torch');
  });

  it('neither the library nor the CLI loads the chart stack at start', () => {
    const probe = (entry: string) =>
      node(['-e', `require(${JSON.stringify(entry)}); console.log(Object.keys(require.cache).filter((k) => /[\\\\/](vega|vega-lite|@resvg)[\\\\/]/.test(k)).length);`]);
    expect(probe('xception-torch').stdout).toBe('0');
    expect(probe('./dist/lib/cli.js').stdout).toBe('0');
  });
});
