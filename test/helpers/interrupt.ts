// Runs the CLI and sends it SIGINT once its output matches a pattern (Ctrl-C in the middle of work).
import { spawn } from 'child_process';

export interface InterruptedRun {
  code: number | null;
  signalled: boolean;
  stdout: string;
  stderr: string;
}

export async function interruptWhen(command: string, args: string[], pattern: RegExp, signal: NodeJS.Signals = 'SIGINT'): Promise<InterruptedRun> {
  const child = spawn(command, args);
  const run: InterruptedRun = { code: null, signalled: false, stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => {
    run.stdout += chunk.toString();
    if (!run.signalled && pattern.test(run.stdout)) {
      run.signalled = true;
      child.kill(signal);
    }
  });
  child.stderr.on('data', (chunk: Buffer) => {
    run.stderr += chunk.toString();
  });
  run.code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  return run;
}
