// Which process group a training process joins: from the caller's options or from torchrun's
// environment, checked and completed with PyTorch's defaults. Pure: no addon, no I/O.
//
// The environment is the one torchrun (torch.distributed.run) gives each worker and that our own
// launcher (launcher.ts) copies: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, and, under torchrun's agent, TORCHELASTIC_USE_AGENT_STORE and
// TORCHELASTIC_RESTART_COUNT (torch/distributed/elastic/agent/server/local_elastic_agent.py).
// Mistakes are thrown as the Trainer's option errors are (lib/trainer-options.ts): a RangeError
// naming the option or the variable, which the CLI reports as a usage error (exit code 2).
import { LIMITS } from '../limits';

export type DistributedBackend = 'gloo' | 'nccl';

export const DISTRIBUTED_BACKENDS: readonly DistributedBackend[] = ['gloo', 'nccl'];

/** PyTorch's default_pg_timeout: 30 minutes for a collective (or the rendezvous) to complete. */
export const DEFAULT_TIMEOUT_SECONDS = 1800;

export const DEFAULT_MASTER_ADDR = '127.0.0.1';

/** Our own variable for the timeout (torchrun has none; PyTorch takes it in code). */
export const TIMEOUT_VARIABLE = 'XCEPTION_TORCH_DIST_TIMEOUT';

/** Highest TCP port. */
const MAX_PORT = 65535;

/** The process group of one process, as a caller may give it (`Trainer({ distributed })`). */
export interface DistributedOptions {
  /** Default: 'nccl' on CUDA, 'gloo' on the CPU. */
  backend?: DistributedBackend;
  /** This process: 0 .. worldSize - 1. Rank 0 hosts the store and owns the run folder. */
  rank: number;
  worldSize: number;
  /** This process on its machine: its CUDA device is cuda:localRank. Default: rank % localWorldSize. */
  localRank?: number;
  /** Processes on this machine. Default: worldSize (one machine). */
  localWorldSize?: number;
  /** Where rank 0's TCPStore listens. Default 127.0.0.1. */
  masterAddr?: string;
  masterPort: number;
  /** Seconds a collective or the rendezvous may wait for the other ranks. Default 1800. */
  timeoutSeconds?: number;
  /**
   * torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True): every rank is a client
   * and keys live under `/worker/attempt_<restartCount>`. Default false.
   */
  useAgentStore?: boolean;
  /** With useAgentStore: TORCHELASTIC_RESTART_COUNT, the agent's restarts of the workers. Default 0. */
  restartCount?: number;
}

/** A process group's settings, every default filled in and checked. */
export interface DistributedSettings {
  backend: DistributedBackend;
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutSeconds: number;
  /** this process creates the TCPStore server (rank 0 unless torchrun's agent hosts it) */
  isStoreServer: boolean;
  /** key prefix in the store: torchrun's `/worker/attempt_<TORCHELASTIC_RESTART_COUNT>` when the agent hosts the store, else '' */
  storePrefix: string;
}

/** A non-negative integer read from a variable, or a RangeError naming it. */
function envInteger(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const n = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n)) {
    throw new RangeError(`${name} must be a non-negative integer; got ${JSON.stringify(raw)} (from the environment)`);
  }
  return n;
}

/** A variable that must be set (and not blank) in a worker's environment. */
function envRequired(env: NodeJS.ProcessEnv, name: string, worldSize: number): string {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') {
    throw new RangeError(`${name} must be set when WORLD_SIZE is ${worldSize}: torchrun and xception-torch --nproc-per-node set it for each worker`);
  }
  return raw.trim();
}

/**
 * The process group that torchrun's environment describes, or undefined when this process trains
 * alone (WORLD_SIZE unset or 1). The backend is left to resolveDistributed (it depends on the
 * device); the timeout comes from XCEPTION_TORCH_DIST_TIMEOUT when set.
 */
export function distributedFromEnv(env: NodeJS.ProcessEnv = process.env): DistributedOptions | undefined {
  const worldSize = envInteger(env, 'WORLD_SIZE');
  if (worldSize === undefined || worldSize === 1) return undefined;
  // As PyTorch's env:// rendezvous: RANK, MASTER_ADDR and MASTER_PORT must be there too.
  for (const name of ['RANK', 'MASTER_ADDR', 'MASTER_PORT']) envRequired(env, name, worldSize);
  const timeout = env[TIMEOUT_VARIABLE];
  let timeoutSeconds: number | undefined;
  if (timeout !== undefined && timeout.trim() !== '') {
    timeoutSeconds = Number(timeout);
    if (!(Number.isFinite(timeoutSeconds) && timeoutSeconds > 0)) {
      throw new RangeError(`${TIMEOUT_VARIABLE} must be a positive number of seconds; got ${JSON.stringify(timeout)} (from the environment)`);
    }
  }
  // Checked here as well as in resolveDistributed, so that the message names the variable.
  const rank = envInteger(env, 'RANK')!;
  const localRank = envInteger(env, 'LOCAL_RANK');
  const localWorldSize = envInteger(env, 'LOCAL_WORLD_SIZE');
  const masterPort = envInteger(env, 'MASTER_PORT')!;
  const fromEnv = ' (from the environment)';
  if (worldSize < 1) throw new RangeError(`WORLD_SIZE must be at least 1; got ${worldSize}${fromEnv}`);
  if (rank >= worldSize) throw new RangeError(`RANK must be below WORLD_SIZE (${worldSize}); got ${rank}${fromEnv}`);
  if (localWorldSize !== undefined && (localWorldSize < 1 || localWorldSize > worldSize)) {
    throw new RangeError(`LOCAL_WORLD_SIZE must be from 1 to WORLD_SIZE (${worldSize}); got ${localWorldSize}${fromEnv}`);
  }
  if (localRank !== undefined && localRank >= (localWorldSize ?? worldSize)) {
    throw new RangeError(`LOCAL_RANK must be below ${localWorldSize === undefined ? 'WORLD_SIZE' : 'LOCAL_WORLD_SIZE'} (${localWorldSize ?? worldSize}); got ${localRank}${fromEnv}`);
  }
  if (masterPort < 1 || masterPort > MAX_PORT) throw new RangeError(`MASTER_PORT must be a TCP port from 1 to ${MAX_PORT}; got ${masterPort}${fromEnv}`);
  // torchrun writes str(True) / str(False); only 'True' means the agent hosts the store (rendezvous.py).
  const useAgentStore = env.TORCHELASTIC_USE_AGENT_STORE === 'True';
  const options: DistributedOptions = {
    rank,
    worldSize,
    localRank,
    localWorldSize,
    masterAddr: envRequired(env, 'MASTER_ADDR', worldSize),
    masterPort,
    timeoutSeconds,
    useAgentStore,
    restartCount: useAgentStore ? envInteger(env, 'TORCHELASTIC_RESTART_COUNT') ?? 0 : undefined,
  };
  // Keys left undefined are the defaults; drop them so that a spread over these options overrides nothing.
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as unknown as DistributedOptions;
}

/**
 * The settings of the process group to join: from the environment ('env'), or from the options;
 * undefined when training in one process ('env' without WORLD_SIZE > 1, or no option). `device` is
 * the resolved device kind, which chooses the default backend. Throws a RangeError or TypeError
 * naming the first option that is wrong.
 */
export function resolveDistributed(
  option: 'env' | DistributedOptions | undefined, device: 'cpu' | 'cuda', env: NodeJS.ProcessEnv = process.env,
): DistributedSettings | undefined {
  if (option === undefined) return undefined;
  if (option === 'env') return resolveDistributed(distributedFromEnv(env), device, env);
  if (typeof option !== 'object' || option === null) {
    throw new TypeError(`distributed must be 'env' or { rank, worldSize, masterPort, … }; got ${JSON.stringify(option)}`);
  }
  const o = option;
  const integer = (name: string, v: unknown, min: number, max: number, why = ''): number => {
    if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max)) {
      throw new RangeError(`distributed.${name} must be an integer from ${min} to ${max}${why}; got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const worldSize = integer('worldSize', o.worldSize, 1, Number.MAX_SAFE_INTEGER);
  const rank = integer('rank', o.rank, 0, worldSize - 1, ` (worldSize - 1)`);
  const localWorldSize = o.localWorldSize === undefined ? worldSize
    : integer('localWorldSize', o.localWorldSize, 1, worldSize, ' (worldSize)');
  // Without localRank, ranks are taken to fill each machine in turn (as torchrun numbers them).
  const localRank = o.localRank === undefined ? rank % localWorldSize : integer('localRank', o.localRank, 0, localWorldSize - 1, ' (localWorldSize - 1)');
  const masterPort = integer('masterPort', o.masterPort, 1, MAX_PORT);
  const masterAddr = o.masterAddr ?? DEFAULT_MASTER_ADDR;
  if (typeof masterAddr !== 'string' || masterAddr.trim() === '') {
    throw new RangeError(`distributed.masterAddr must name a host; got ${JSON.stringify(o.masterAddr)}`);
  }
  const timeoutSeconds = o.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
  if (!(typeof timeoutSeconds === 'number' && Number.isFinite(timeoutSeconds) && timeoutSeconds > 0)) {
    throw new RangeError(`distributed.timeoutSeconds must be a positive number; got ${JSON.stringify(o.timeoutSeconds)}`);
  }
  const backend = o.backend ?? (device === 'cuda' ? 'nccl' : 'gloo');
  if (!DISTRIBUTED_BACKENDS.includes(backend)) {
    throw new RangeError(`distributed.backend must be ${DISTRIBUTED_BACKENDS.map((b) => `'${b}'`).join(' or ')}; got ${JSON.stringify(o.backend)}`);
  }
  if (backend === 'nccl' && device !== 'cuda') {
    throw new RangeError("distributed.backend 'nccl' reduces CUDA tensors only; train on a CUDA device, or use 'gloo' on the CPU");
  }
  if (o.useAgentStore !== undefined && typeof o.useAgentStore !== 'boolean') {
    throw new RangeError(`distributed.useAgentStore must be true or false; got ${JSON.stringify(o.useAgentStore)}`);
  }
  const useAgentStore = o.useAgentStore ?? false;
  const restartCount = o.restartCount === undefined ? 0 : integer('restartCount', o.restartCount, 0, Number.MAX_SAFE_INTEGER);
  return {
    backend, rank, worldSize, localRank, localWorldSize, masterAddr: masterAddr.trim(), masterPort, timeoutSeconds,
    // As rendezvous.py's _create_c10d_store: the agent's store, or one hosted by rank 0.
    isStoreServer: !useAgentStore && rank === 0,
    storePrefix: useAgentStore ? `/worker/attempt_${restartCount}` : '',
  };
}

/**
 * Whether this process owns the run folder (writes it and holds its lock): a process training
 * alone, or rank 0 of a group. Read from torchrun's variables without checking them
 * (distributedFromEnv does that).
 */
export function ownsRunFolder(env: NodeJS.ProcessEnv = process.env): boolean {
  const worldSize = env.WORLD_SIZE?.trim();
  if (worldSize === undefined || worldSize === '' || Number(worldSize) === 1) return true;
  return Number(env.RANK) === 0;
}

/**
 * Each rank's share of the global batch. `--batch-size` stays the global batch, so that a recipe
 * means the same on any number of processes (as DataParallel split the notebook's 128).
 */
export function perRankBatchSize(globalBatch: number, worldSize: number): number {
  if (!Number.isSafeInteger(globalBatch) || globalBatch < 1) throw new RangeError(`batchSize must be a positive integer; got ${globalBatch}`);
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new RangeError(`the world size must be a positive integer; got ${worldSize}`);
  if (globalBatch % worldSize !== 0) {
    const lower = globalBatch - (globalBatch % worldSize);
    const choices = [lower, lower + worldSize].filter((b) => b > 0).join(' or ');
    throw new RangeError(`--batch-size (batchSize) ${globalBatch} is the global batch and must divide evenly across the ${worldSize} processes ` +
      `(world size ${worldSize}); use a multiple of ${worldSize}, e.g. ${choices}`);
  }
  const perRank = globalBatch / worldSize;
  if (perRank < LIMITS.minTrainBatch) {
    // Each process normalises its own share (DDP's BatchNorm keeps per-process statistics).
    throw new RangeError(`--batch-size (batchSize) ${globalBatch} gives each of the ${worldSize} processes (world size ${worldSize}) ${perRank} image${perRank === 1 ? '' : 's'}; ` +
      `BatchNorm needs ${LIMITS.minTrainBatch} per process, so use at least ${LIMITS.minTrainBatch * worldSize}`);
  }
  return perRank;
}
