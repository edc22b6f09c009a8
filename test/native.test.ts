// Loading the addon: a missing or broken build gives an error that says what is wrong and the
// one command that fixes it; the real build loads and reports what it was built against.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadAddonFrom, native, REBUILD_COMMAND } from '../lib/native';
import { runtimeInfo } from '../lib';
import { decodeCudaVersion, decodeCudnnVersion } from '../lib/runtime';

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

describe('CUDA facts where there is no GPU', () => {
  // CI and this project's development machine have a CPU-only libtorch: every CUDA query must answer
  // "not available" or fail with a message, never crash. (test/gpu/ covers the GPU side.)
  const info = native().info();
  const cuda = info.cudaAvailable;

  it('reports what the build and the machine have', () => {
    expect(typeof info.builtWithCuda).toBe('boolean');
    if (!cuda) {
      expect(info.gpu).toBeUndefined();
      expect(native().cudaMemoryStats()).toBeNull();
      expect(() => native().resetCudaPeakMemory()).not.toThrow();
    }
    expect(() => native().cudaMemoryStats(-1)).toThrow(/no CUDA device -1/);
    expect(() => native().setAllowTF32('yes' as unknown as boolean)).toThrow(/setAllowTF32 expects a boolean/);
  });

  it('refuses CUDA work with the reason when no GPU is visible', () => {
    if (cuda) return;  // only meaningful without a GPU; test/gpu runs the real thing
    const t = { shape: [2], data: Float32Array.from([1, 2]) };
    expect(() => native().adamStep({ params: [t], grads: [t], expAvg: [t], expAvgSq: [t], steps: 0, device: 'cuda' }))
      .toThrow(/device 'cuda' was requested but CUDA is not available/);
    expect(() => native().gradScalerStep({ grads: [t], scale: 1, growthTracker: 0, skippedSteps: 0, device: 'cuda:0' }))
      .toThrow(/CUDA is not available/);
  });

  it('decodes libtorch\'s version integers', () => {
    expect(decodeCudaVersion(12040)).toBe('12.4');
    expect(decodeCudaVersion(13000)).toBe('13.0');
    expect(decodeCudnnVersion(8902)).toBe('8.9.2');
    expect(decodeCudnnVersion(91002)).toBe('9.10.2');
  });
});
