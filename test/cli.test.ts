// The `xception-torch` command as a user runs it (the compiled dist/lib/cli.js, as npx does).
import { spawnSync } from 'child_process';
import * as path from 'path';

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('xception-torch CLI', () => {
  it('summary prints the layer table and 20,827,442 parameters for 10-class Xception', () => {
    const r = run('summary', '--model', 'xception', '--num-classes', '10');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Total params: 20,827,442/);
    expect(r.stdout).toMatch(/block12\s.*XceptionBlock\s.*\[1, 1024, 10, 10\]\s.*2,039,584/);
    expect(r.stdout).toMatch(/fc\s.*Linear\s.*\[1, 10\]\s.*20,490\s.*20\.48 K/);
    expect(r.stdout).toMatch(/Multiply-accumulates per image \(eval\): 8\.3\d G/);
  });

  it('summary counts multiply-accumulates per layer and in total, within 0.5% of the published figures at 299', () => {
    for (const [model, expected] of [['xception', 8.36e9], ['inception_v3', 5.71e9]] as const) {
      const r = run('summary', '--model', model, '--num-classes', '1000', '--json');
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as { macs: number; layers: Array<{ name: string; macs: number; trainingOnly: boolean }> };
      expect(Math.abs(out.macs / expected - 1)).toBeLessThan(0.005);
      expect(out.layers.filter((l) => !l.trainingOnly).reduce((n, l) => n + l.macs, 0)).toBe(out.macs);
      expect(out.layers.find((l) => l.name === 'fc')?.macs).toBe(2048 * 1000);
    }
    const inception = JSON.parse(run('summary', '--model', 'inception_v3', '--json').stdout) as { layers: Array<{ name: string; macs: number; trainingOnly: boolean }> };
    const aux = inception.layers.find((l) => l.name === 'AuxLogits');
    expect(aux?.trainingOnly).toBe(true);
    expect(aux?.macs).toBeGreaterThan(0);
  });

  it('summary --json gives Inception V3 layers whose parameters add up', () => {
    const r = run('summary', '--model', 'inception_v3', '--num-classes', '10', '--no-aux-logits', '--json', '--image-size', '160');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { parameters: number; layers: Array<{ name: string; parameters: number }> };
    expect(out.parameters).toBe(21_806_058);
    expect(out.layers.reduce((n, l) => n + l.parameters, 0)).toBe(21_806_058);
    expect(out.layers.map((l) => l.name)).not.toContain('AuxLogits');
  });

  it('bad options give a one-line error and exit code 2', () => {
    for (const args of [
      ['summary', '--model', 'resnet'],
      ['summary', '--num-classes', 'ten'],
      ['summary', '--model', 'inception_v3', '--image-size', '64'],
      ['summary', '--bogus'],
      ['frobnicate'],
    ]) {
      const r = run(...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/error/);
    }
  });

  it('--help documents each option with its default', () => {
    const r = run('summary', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--num-classes <n>.*\(default: 10\)/);
    expect(r.stdout).toMatch(/Examples:\n {2}\$ xception-torch summary/);
    expect(r.stdout).toMatch(/--image-size <n>.*\(default: 299\)/);
  });
});
