// The Python reference of the parity tests: which interpreter (XCEPTION_TORCH_PYTHON, else
// /usr/bin/python3), what it must import, and the command that installs it. The tests
// (test/helpers/python.ts) and `xception-torch doctor` both ask here, so the rule lives once.
// The tests import the modules (about two seconds: torch loads its libraries); doctor, which must
// answer in a second or two, only has Python find them and read their versions.
import { spawn, spawnSync } from 'child_process';

export const PYTHON_VARIABLE = 'XCEPTION_TORCH_PYTHON';
export const DEFAULT_PYTHON = '/usr/bin/python3';
/** The modules the reference needs. */
export const PYTHON_REFERENCE_MODULES = ['torch', 'torchvision'] as const;
/** What the parity tests run first: the import, printing the two versions. */
export const PYTHON_REFERENCE_IMPORT = `import ${PYTHON_REFERENCE_MODULES.join(', ')}`;
const IMPORT_CODE = `${PYTHON_REFERENCE_IMPORT}; print(${PYTHON_REFERENCE_MODULES.map((m) => `${m}.__version__`).join(', ')})`;
/** Without importing them: whether Python finds the modules, and their installed versions. */
const FIND_CODE = [
  'import sys, importlib.util as u, importlib.metadata as m',
  `names = ${JSON.stringify(PYTHON_REFERENCE_MODULES)}`,
  "missing = [n for n in names if u.find_spec(n) is None]",
  "missing and sys.exit('No module named ' + ', '.join(repr(n) for n in missing))",
  "def version(n):\n  try:\n    return m.version(n)\n  except Exception:\n    return '?'",
  "print(*[version(n) for n in names])",
].join('\n');
/** Debian/Ubuntu, for /usr/bin/python3. */
export const PYTHON_REFERENCE_INSTALL = 'sudo apt-get install -y libtorch-dev python3-torchvision';

/** The interpreter the parity tests run: `XCEPTION_TORCH_PYTHON` when set, else /usr/bin/python3. */
export function referencePython(env: NodeJS.ProcessEnv = process.env): string {
  return env[PYTHON_VARIABLE]?.trim() || DEFAULT_PYTHON;
}

/** Whether `python` imports torch and torchvision: their versions, or why not. */
export type PythonReferenceCheck = { ok: true; versions: string } | { ok: false; why: string; notFound?: boolean };

interface Finished {
  error?: Error;
  status: number | null;
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function verdict(r: Finished, timeoutMs?: number): PythonReferenceCheck {
  if (r.error) {
    const timedOut = (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
    const notFound = (r.error as NodeJS.ErrnoException).code === 'ENOENT';
    return { ok: false, why: timedOut ? `no answer within ${(timeoutMs ?? 0) / 1000} s` : r.error.message, notFound };
  }
  if (r.status !== 0) {
    const last = r.stderr.trim().split('\n').pop();
    return { ok: false, why: last || (r.signal ? `killed by ${r.signal}` : `exit ${r.status}`) };
  }
  const versions = r.stdout.trim().split(/\s+/).filter((v) => v !== '');
  if (versions.length !== PYTHON_REFERENCE_MODULES.length) {
    return { ok: false, why: `not a Python: it answered ${JSON.stringify(r.stdout.trim().slice(0, 80))}` };
  }
  return { ok: true, versions: PYTHON_REFERENCE_MODULES.map((m, i) => `${m} ${versions[i] ?? '?'}`).join(', ') };
}

/** Imports the modules in `python` and waits for it (the tests, before their first oracle call). */
export function checkPythonReferenceSync(python: string): PythonReferenceCheck {
  const r = spawnSync(python, ['-c', IMPORT_CODE], { encoding: 'utf8' });
  return verdict({ error: r.error, status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' });
}

/**
 * Has `python` find the modules and their versions, without importing them and without blocking
 * (doctor runs it beside its other checks); gives up after `timeoutMs`. Never rejects.
 */
export function findPythonReference(python: string, timeoutMs: number): Promise<PythonReferenceCheck> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    const finish = (r: Finished) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(verdict(r, timeoutMs));
    };
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(python, ['-c', FIND_CODE], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      resolve({ ok: false, why: (error as Error).message });
      return;
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ error: Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }), status: null, stdout, stderr });
    }, timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', (error) => finish({ error, status: null, stdout, stderr }));
    child.on('close', (status, signal) => finish({ status, signal, stdout, stderr }));
  });
}
