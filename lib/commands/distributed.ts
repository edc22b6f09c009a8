// The data-parallel options of `train` and `compare`: --nproc-per-node starts the workers
// (lib/distributed/launcher.ts) instead of training here; a worker (started by it or by torchrun)
// passes its process group to the Trainer. Both run the same command line, so the options mean
// the same under either launcher.
import { givenByUser } from './config-file';
import { Command, InvalidArgumentError, Option } from 'commander';
import { defaultThreadsPerWorker, launchWorkers } from '../distributed/launcher';
import {
  DEFAULT_MASTER_ADDR, DEFAULT_TIMEOUT_SECONDS, DISTRIBUTED_BACKENDS, DistributedBackend, DistributedOptions, distributedFromEnv,
  perRankBatchSize, TIMEOUT_VARIABLE,
} from '../distributed/settings';
import type { TrainSettings } from './train';
import { decimal, integer, UsageError } from './options';

/** Most worker processes per machine. */
export const MAX_NPROC_PER_NODE = 256;

/** The flags only the launcher reads; the workers get the rest of the command line. */
const LAUNCHER_FLAGS = ['--nproc-per-node', '--master-addr', '--master-port'];

function host(value: string): string {
  if (value.trim() === '' || /\s/.test(value.trim())) throw new InvalidArgumentError('expected a host name or address');
  return value.trim();
}

export function addDistributedOptions(cmd: Command): Command {
  cmd.option('--nproc-per-node <n>', `data-parallel: start N worker processes on this machine, one per GPU on CUDA (cuda:LOCAL_RANK); --batch-size stays the global batch`, integer(1, MAX_NPROC_PER_NODE));
  cmd.option('--master-addr <host>', "with --nproc-per-node: the address of rank 0's store", host, DEFAULT_MASTER_ADDR);
  cmd.option('--master-port <port>', "with --nproc-per-node: the port of rank 0's store (default: a free port)", integer(1, 65535));
  cmd.addOption(new Option('--dist-backend <name>', 'data-parallel: the process group backend (default: nccl on CUDA, gloo on the CPU)').choices(DISTRIBUTED_BACKENDS));
  cmd.option('--dist-timeout <seconds>', `data-parallel: how long a rank waits for the others before failing (default: $${TIMEOUT_VARIABLE}, else ${DEFAULT_TIMEOUT_SECONDS})`, decimal({ min: 0, minExclusive: true }));
  return cmd;
}

/** This process is a worker of a group of more than one: torchrun's variables say so. */
export function isWorker(env: NodeJS.ProcessEnv = process.env): boolean {
  const size = env.WORLD_SIZE?.trim();
  return size !== undefined && size !== '' && Number(size) !== 1;
}

/** The command line less the launcher's flags (`--flag value` and `--flag=value`). */
export function workerArgv(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (LAUNCHER_FLAGS.includes(arg)) {
      i += 1;
      continue;
    }
    if (LAUNCHER_FLAGS.some((flag) => arg.startsWith(`${flag}=`))) continue;
    out.push(arg);
  }
  return out;
}

export interface LaunchContext {
  /** The command line as the user gave it (the command name first). */
  argv: string[];
  /** The run (or comparison) folder when --out is not given, which every worker must share. */
  defaultOut: string;
  /** What --quick sets for this command. */
  quickPreset: Readonly<Partial<TrainSettings>>;
  env?: NodeJS.ProcessEnv;
}

/**
 * With --nproc-per-node > 1 in a process that is not a worker yet: starts the workers, waits for
 * them and resolves with the launcher's exit code. Otherwise resolves undefined: train here.
 */
export async function launchIfRequested(opts: Record<string, unknown>, cmd: Command, c: LaunchContext): Promise<number | undefined> {
  const nproc = opts.nprocPerNode as number | undefined;
  const env = c.env ?? process.env;
  if (nproc === undefined || nproc === 1 || isWorker(env)) return undefined;
  checkLaunch(opts, cmd, nproc, c.quickPreset);
  const argv = workerArgv(c.argv);
  // Each worker would otherwise name the default folder after its own clock. (--resume without
  // --out is left for the workers to refuse.)
  if (opts.out === undefined && !opts.resume) argv.push('--out', c.defaultOut);
  return launchWorkers({
    nprocPerNode: nproc,
    argv,
    masterAddr: opts.masterAddr as string,
    masterPort: opts.masterPort as number | undefined,
    // N workers each with every core would oversubscribe the CPU N times.
    threadsPerWorker: givenByUser(cmd, 'threads') ? undefined : defaultThreadsPerWorker(nproc),
    env,
  });
}

/** What the launcher can tell before it starts anything; the rest each worker checks (exit code 2). */
function checkLaunch(opts: Record<string, unknown>, cmd: Command, nproc: number, quick: Readonly<Partial<TrainSettings>>): void {
  if (opts.paramsOnly || opts.throughput) {
    throw new UsageError('--nproc-per-node trains in parallel; --params-only and --throughput run in one process');
  }
  // As resolveTrainSettings layers them; a resumed run's own settings are checked by the workers.
  const effective = <K extends keyof TrainSettings>(key: K): unknown =>
    (givenByUser(cmd, key) ? opts[key] : opts.quick && quick[key] !== undefined ? quick[key] : opts.resume ? undefined : opts[key]);
  const device = effective('device');
  if (opts.distBackend === 'nccl' && typeof device === 'string' && device === 'cpu') {
    throw new UsageError('--dist-backend nccl reduces CUDA tensors only; use --device cuda, or --dist-backend gloo on the CPU');
  }
  const batch = effective('batchSize');
  if (typeof batch === 'number') {
    try {
      perRankBatchSize(batch, nproc);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
}

/**
 * What a worker passes to the Trainer as `distributed`: 'env' (torchrun's variables), or those
 * variables with --dist-backend and --dist-timeout over them; undefined when this process trains
 * alone. A broken environment is a usage error.
 */
export function distributedTrainerOption(opts: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): 'env' | DistributedOptions | undefined {
  let fromEnv: DistributedOptions | undefined;
  try {
    fromEnv = distributedFromEnv(env);
  } catch (error) {
    throw error instanceof RangeError ? new UsageError(error.message) : error;
  }
  if (!fromEnv) return undefined;
  const backend = opts.distBackend as DistributedBackend | undefined;
  const timeoutSeconds = opts.distTimeout as number | undefined;
  if (backend === undefined && timeoutSeconds === undefined) return 'env';
  return { ...fromEnv, ...(backend && { backend }), ...(timeoutSeconds !== undefined && { timeoutSeconds }) };
}
