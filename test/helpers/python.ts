// Runs the Python reference (test/oracle/*.py) with an interpreter that has PyTorch and
// torchvision. Missing PyTorch fails the test with the command that installs it; never a skip.
import { spawnSync } from 'child_process';
import * as path from 'path';

export const PYTHON = process.env.XCEPTION_TORCH_PYTHON ?? '/usr/bin/python3';
const ORACLE = path.join(__dirname, '..', 'oracle', 'parity.py');

const checked = new Set<string>();

export function requirePythonTorch(python = PYTHON): void {
  if (checked.has(python)) return;
  const r = spawnSync(python, ['-c', 'import torch, torchvision'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`);
    throw new Error(
      `The parity tests need PyTorch and torchvision in ${python} (${why}).\n` +
      'Install them with:\n  sudo apt-get install -y python3-torchvision   # Debian/Ubuntu, for /usr/bin/python3\n' +
      'or use another interpreter that has them:\n  XCEPTION_TORCH_PYTHON=/path/to/python npm test',
    );
  }
  checked.add(python);
}

/** Runs `parity.py <command> ...args` and returns its JSON answer. */
export function oracle<T = unknown>(command: string, args: Record<string, string | number>): T {
  requirePythonTorch();
  const argv = [ORACLE, command, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const r = spawnSync(PYTHON, argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`oracle ${command} failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
