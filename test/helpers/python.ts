// Runs the Python reference (test/oracle/*.py) with an interpreter that has PyTorch and
// torchvision. Missing PyTorch fails the test with the command that installs it; never a skip.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { checkPythonReferenceSync, PYTHON_REFERENCE_INSTALL, PYTHON_VARIABLE, referencePython } from '../../lib/python-reference';

export const PYTHON = referencePython();
const ORACLE = path.join(__dirname, '..', 'oracle', 'parity.py');

const checked = new Set<string>();

export function requirePythonTorch(python = PYTHON): void {
  if (checked.has(python)) return;
  const r = checkPythonReferenceSync(python);
  if (!r.ok) {
    throw new Error(
      `The parity tests need PyTorch and torchvision in ${python} (${r.why}).\n` +
      `Install them with:\n  ${PYTHON_REFERENCE_INSTALL}   # Debian/Ubuntu, for /usr/bin/python3\n` +
      `or use another interpreter that has them:\n  ${PYTHON_VARIABLE}=/path/to/python npm test`,
    );
  }
  checked.add(python);
}

/** Runs `parity.py <command> ...args` and returns its JSON answer. */
export function oracle<T = unknown>(command: string, args: Record<string, string | number>): T {
  return runOracle<T>(ORACLE, command, args);
}

/** Runs `test/oracle/<script> <command> --key value ...` and returns its JSON answer. */
export function runOracle<T = unknown>(script: string, command: string, args: Record<string, string | number>): T {
  requirePythonTorch();
  const file = path.isAbsolute(script) ? script : path.join(__dirname, '..', 'oracle', script);
  const argv = [file, command, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const r = spawnSync(PYTHON, argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ORACLE_THREADS: '2' } });
  if (r.status !== 0) throw new Error(`${path.basename(file)} ${command} failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
