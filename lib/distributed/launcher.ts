// `--nproc-per-node N`: this machine's share of torchrun. It starts N copies of the CLI, each with
// the environment torchrun gives its workers (settings.ts reads it), and waits for them; it trains
// nothing itself. It relays what a user does to the launcher (Ctrl-C) to the workers and turns
// their exits into one exit code:
//   - every worker exits 0                  -> 0
//   - one fails (a code, or a signal)       -> one line naming it on stderr; SIGTERM to the others,
//                                              SIGKILL after a grace period; the first failure's
//                                              code (128 + the signal's number for a signal)
//   - SIGINT or SIGTERM to the launcher     -> SIGINT to every worker (each finishes its batch,
//                                              rank 0 writes a checkpoint, all exit 130) -> 130
import { ChildProcess, spawn, StdioOptions } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import { freePort } from './free-port';
import { DEFAULT_MASTER_ADDR } from './settings';

/** How long the other workers have to exit after SIGTERM before they are killed. */
export const DEFAULT_GRACE_MS = 10_000;

export interface LaunchOptions {
  /** Worker processes to start on this machine (torchrun's --nproc-per-node). */
  nprocPerNode: number;
  /** The CLI arguments each worker gets (the command and its options, less the launcher's flags). */
  argv: string[];
  /** Where rank 0's store listens. Default 127.0.0.1. */
  masterAddr?: string;
  /** Default: a port that is free on masterAddr. */
  masterPort?: number;
  /** Appended to each worker's arguments as `--threads N` (give it when the user gave no --threads). */
  threadsPerWorker?: number;
  /** The workers' environment, to which torchrun's variables are added. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The workers' stdio. Default 'inherit': rank 0 prints, the others are silent unless they fail. */
  stdio?: StdioOptions;
  /** The program and its first arguments. Default: this Node.js running this package's CLI. */
  workerCommand?: string[];
  /** Milliseconds between SIGTERM and SIGKILL when stopping the workers. Default 10 s. */
  graceMs?: number;
  /** Where the launcher's own lines go. Default stderr. */
  log?: (line: string) => void;
}

/** CPU threads for each of `nproc` workers: the cores shared evenly, at least one each. */
export function defaultThreadsPerWorker(nproc: number, cores: number = os.availableParallelism()): number {
  return Math.max(1, Math.floor(cores / nproc));
}

/** The environment of worker `rank` of `nproc` on this (single) machine, as torchrun sets it. */
export function workerEnv(base: NodeJS.ProcessEnv, rank: number, nproc: number, masterAddr: string, masterPort: number): NodeJS.ProcessEnv {
  // A torchrun agent's variables from an enclosing launch would describe another group.
  const { TORCHELASTIC_USE_AGENT_STORE: _agent, TORCHELASTIC_RESTART_COUNT: _restarts, ...rest } = base;
  return {
    ...rest,
    RANK: String(rank),
    LOCAL_RANK: String(rank),
    WORLD_SIZE: String(nproc),
    LOCAL_WORLD_SIZE: String(nproc),
    MASTER_ADDR: masterAddr,
    MASTER_PORT: String(masterPort),
  };
}

/** The exit code of a process that ended with `code` or by `signal`, as a shell reports it. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (signal) return 128 + (os.constants.signals[signal] ?? 0);
  return code ?? 1;
}

// Compiled, this file is dist/lib/distributed/launcher.js and the CLI dist/lib/cli.js.
const CLI_SCRIPT = path.join(__dirname, '..', 'cli.js');

interface Worker {
  rank: number;
  child: ChildProcess;
  exited: boolean;
}

/**
 * Starts the workers and resolves with the exit code for the launcher once every one of them has
 * exited (see the top of this file).
 */
export async function launchWorkers(o: LaunchOptions): Promise<number> {
  const nproc = o.nprocPerNode;
  if (!Number.isSafeInteger(nproc) || nproc < 1) throw new RangeError(`nprocPerNode must be a positive integer; got ${nproc}`);
  const masterAddr = o.masterAddr ?? DEFAULT_MASTER_ADDR;
  const masterPort = o.masterPort ?? await freePort(masterAddr);
  const [program, ...programArgs] = o.workerCommand ?? [process.execPath, CLI_SCRIPT];
  const args = [...programArgs, ...o.argv, ...(o.threadsPerWorker === undefined ? [] : ['--threads', String(o.threadsPerWorker)])];
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const graceMs = o.graceMs ?? DEFAULT_GRACE_MS;

  return new Promise<number>((resolve) => {
    const workers: Worker[] = [];
    let failure: number | undefined;
    let interrupted = false;
    let killTimer: NodeJS.Timeout | undefined;

    const running = () => workers.filter((w) => !w.exited);
    const signalAll = (signal: NodeJS.Signals) => {
      for (const w of running()) w.child.kill(signal);
    };
    const onSignal = (signal: NodeJS.Signals) => {
      interrupted = true;
      if (failure === undefined) log(`xception-torch: ${signal}: asking the ${running().length} workers to write a checkpoint and stop`);
      // Each signal is relayed once: a second Ctrl-C makes the workers quit at once, as it does a single process.
      signalAll('SIGINT');
    };
    const onSigint = () => onSignal('SIGINT');
    const onSigterm = () => onSignal('SIGTERM');
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);

    const finish = () => {
      if (running().length > 0) return;
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      if (killTimer) clearTimeout(killTimer);
      resolve(failure ?? (interrupted ? 130 : 0));
    };

    const onExit = (w: Worker, code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
      if (w.exited) return;
      w.exited = true;
      const exitCode = error ? 1 : exitCodeOf(code, signal);
      // After Ctrl-C the workers exit 130 (or 0 when they were done); that is no failure.
      const expected = exitCode === 0 || (interrupted && exitCode === 130);
      if (!expected && failure === undefined) {
        failure = exitCode;
        const how = error ? `could not start: ${error.message}` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
        const others = running().length;
        log(`xception-torch: worker rank ${w.rank} (pid ${w.child.pid ?? 'none'}) ${how}` +
          `${others ? `; stopping the other ${others} worker${others === 1 ? '' : 's'}` : ''}`);
        signalAll('SIGTERM');
        // A worker stuck in a collective may not honour SIGTERM at once.
        killTimer = setTimeout(() => signalAll('SIGKILL'), graceMs);
      }
      finish();
    };

    for (let rank = 0; rank < nproc; rank++) {
      // Detached (a process group of its own): Ctrl-C in a terminal reaches the launcher alone, which
      // relays it once; otherwise each worker would get it twice and quit without a checkpoint.
      const child = spawn(program, args, {
        env: workerEnv(o.env ?? process.env, rank, nproc, masterAddr, masterPort), stdio: o.stdio ?? 'inherit', detached: true,
      });
      const w: Worker = { rank, child, exited: false };
      workers.push(w);
      // 'error' also reports a signal that could not be sent; only one without a pid means no process.
      child.on('error', (error) => {
        if (child.pid === undefined) onExit(w, null, null, error);
      });
      child.once('exit', (code, signal) => onExit(w, code, signal));
    }
  });
}
