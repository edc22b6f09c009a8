// Running an outside program (python3, nvidia-smi, apt-get) for the libtorch search and reading its
// answer; the search takes another runner in tests.
import { spawnSync } from 'child_process';

export interface CommandResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `cmd` with `args` to completion (apt-get non-interactive), its output as text. */
export function runCommand(cmd: string, args: string[]): CommandResult {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr || (r.error ? r.error.message : '') };
}
