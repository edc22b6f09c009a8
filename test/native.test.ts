// Loading the addon: a missing or broken build gives an error that says what is wrong and the
// one command that fixes it; the real build loads and reports what it was built against.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadAddonFrom, native, REBUILD_COMMAND } from '../lib/native';
import { runtimeInfo } from '../lib';

describe('loading the native addon', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-native-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('says the addon is not built, and how to build it, when the file is missing', () => {
    expect(() => loadAddonFrom(path.join(dir, 'missing.node'))).toThrow(
      new RegExp(`native addon is not built \\(no .*missing\\.node\\)\\. Build it with:\\n {2}${REBUILD_COMMAND.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
  });

  it('names the libtorch it was built against when that libtorch cannot be loaded', () => {
    // An addon whose libtorch dependency is gone looks like this to the loader.
    const fake = path.join(dir, 'stale.node');
    fs.writeFileSync(fake, 'not an ELF file');
    const info = path.join(dir, 'libtorch.json');
    fs.writeFileSync(info, JSON.stringify({ source: 'download', prefixPath: '/gone/libtorch', version: '2.5.1' }));
    let message = '';
    try {
      loadAddonFrom(fake, info);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/built against libtorch 2\.5\.1 at \/gone\/libtorch/);
    expect(message).toMatch(/Loader said: .*(invalid ELF header|file too short)/);
    expect(message).toContain(`Rebuild the addon with:\n  ${REBUILD_COMMAND}`);
  });

  it('was built offline from node-api-headers (Node-API), not from downloaded Node.js headers', () => {
    const cache = fs.readFileSync(path.join(__dirname, '..', 'build', 'CMakeCache.txt'), 'utf8');
    const inc = /^CMAKE_JS_INC:\w+=(.*)$/m.exec(cache)?.[1] ?? '';
    expect(inc).toMatch(/node_modules\/node-api-headers\/include/);
    expect(inc).not.toMatch(/\.cmake-js/);
  });

  it('loads the real build, which reports its libtorch and threads', () => {
    const info = native().info();
    expect(info.torchVersion).toMatch(/^\d+\.\d+/);
    const runtime = runtimeInfo();
    expect(runtime.libtorchVersion).toBe(info.torchVersion);
    expect(runtime.threads).toBeGreaterThanOrEqual(1);
    expect(runtime.hardwareThreads).toBe(os.cpus().length);
    expect(typeof runtime.cudaAvailable).toBe('boolean');
  });
});
