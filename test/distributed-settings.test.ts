// Which process group a process joins: torchrun's environment read as PyTorch reads it
// (torch/distributed/rendezvous.py), the options checked, and the global batch split.
import { Command } from 'commander';
import { addDistributedOptions, distributedTrainerOption, isWorker, workerArgv } from '../lib/commands/distributed';
import { UsageError } from '../lib/commands/options';
import {
  DEFAULT_TIMEOUT_SECONDS, distributedFromEnv, ownsRunFolder, perRankBatchSize, resolveDistributed,
} from '../lib/distributed/settings';

/** What torchrun's local agent gives worker `rank` of a 2 x 4 job on node 1 (local_elastic_agent.py). */
const TORCHRUN_ENV = {
  RANK: '5', WORLD_SIZE: '8', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '4', GROUP_RANK: '1', ROLE_RANK: '5',
  MASTER_ADDR: 'node0.example', MASTER_PORT: '29500', TORCHELASTIC_RESTART_COUNT: '2', TORCHELASTIC_USE_AGENT_STORE: 'True',
};

/** What our own launcher gives rank 0 of 2 (no agent store). */
const LAUNCHER_ENV = { RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '41000' };

describe('distributedFromEnv', () => {
  it('is undefined for a process training alone: no WORLD_SIZE, or WORLD_SIZE 1', () => {
    expect(distributedFromEnv({})).toBeUndefined();
    expect(distributedFromEnv({ WORLD_SIZE: '1', RANK: '0' })).toBeUndefined();
    expect(distributedFromEnv({ WORLD_SIZE: '' })).toBeUndefined();
  });

  it("reads torchrun's variables, the agent's store and its restart count", () => {
    expect(distributedFromEnv(TORCHRUN_ENV)).toEqual({
      rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'node0.example', masterPort: 29500,
      useAgentStore: true, restartCount: 2,
    });
  });

  it('honours XCEPTION_TORCH_DIST_TIMEOUT and refuses a bad one', () => {
    expect(distributedFromEnv({ ...LAUNCHER_ENV, XCEPTION_TORCH_DIST_TIMEOUT: '90' })?.timeoutSeconds).toBe(90);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, XCEPTION_TORCH_DIST_TIMEOUT: 'soon' })).toThrow(/XCEPTION_TORCH_DIST_TIMEOUT must be a positive number.*"soon"/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, XCEPTION_TORCH_DIST_TIMEOUT: '0' })).toThrow(RangeError);
  });

  it('needs RANK, MASTER_ADDR and MASTER_PORT, as the env:// rendezvous does, naming the missing one', () => {
    for (const name of ['RANK', 'MASTER_ADDR', 'MASTER_PORT'] as const) {
      const env: NodeJS.ProcessEnv = { ...LAUNCHER_ENV };
      delete env[name];
      expect(() => distributedFromEnv(env)).toThrow(new RegExp(`^${name} must be set when WORLD_SIZE is 2`));
    }
  });

  it('refuses values out of range, naming the variable', () => {
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, WORLD_SIZE: 'two' })).toThrow(/^WORLD_SIZE must be a non-negative integer; got "two"/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, WORLD_SIZE: '0' })).toThrow(/^WORLD_SIZE must be at least 1/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, RANK: '2' })).toThrow(/^RANK must be below WORLD_SIZE \(2\); got 2/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, RANK: '-1' })).toThrow(/^RANK must be a non-negative integer/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, LOCAL_RANK: '2' })).toThrow(/^LOCAL_RANK must be below LOCAL_WORLD_SIZE \(2\)/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, LOCAL_WORLD_SIZE: '3' })).toThrow(/^LOCAL_WORLD_SIZE must be from 1 to WORLD_SIZE \(2\)/);
    expect(() => distributedFromEnv({ ...LAUNCHER_ENV, MASTER_PORT: '70000' })).toThrow(/^MASTER_PORT must be a TCP port from 1 to 65535/);
  });

  it("takes only 'True' as the agent's store, as rendezvous.py compares with str(True)", () => {
    expect(distributedFromEnv({ ...LAUNCHER_ENV, TORCHELASTIC_USE_AGENT_STORE: 'False', TORCHELASTIC_RESTART_COUNT: '0' })?.useAgentStore).toBe(false);
    expect(distributedFromEnv({ ...LAUNCHER_ENV, TORCHELASTIC_USE_AGENT_STORE: 'true' })?.useAgentStore).toBe(false);
  });
});

describe('resolveDistributed', () => {
  it('is undefined without an option, or with env and no group', () => {
    expect(resolveDistributed(undefined, 'cpu', LAUNCHER_ENV)).toBeUndefined();
    expect(resolveDistributed('env', 'cpu', {})).toBeUndefined();
  });

  it('lets rank 0 host the store without an agent', () => {
    expect(resolveDistributed('env', 'cpu', LAUNCHER_ENV)).toEqual({
      backend: 'gloo', rank: 0, worldSize: 2, localRank: 0, localWorldSize: 2, masterAddr: '127.0.0.1', masterPort: 41000,
      timeoutSeconds: DEFAULT_TIMEOUT_SECONDS, isStoreServer: true, storePrefix: '',
    });
    expect(resolveDistributed('env', 'cpu', { ...LAUNCHER_ENV, RANK: '1', LOCAL_RANK: '1' })).toMatchObject({ rank: 1, isStoreServer: false, storePrefix: '' });
  });

  it("makes every rank a client of torchrun's agent store, under /worker/attempt_<restarts>", () => {
    const s = resolveDistributed('env', 'cuda', { ...TORCHRUN_ENV, RANK: '0', LOCAL_RANK: '0' });
    expect(s).toMatchObject({ backend: 'nccl', rank: 0, localRank: 0, isStoreServer: false, storePrefix: '/worker/attempt_2' });
    // A restart count of 0 when torchrun leaves it out.
    const { TORCHELASTIC_RESTART_COUNT: _count, ...noCount } = TORCHRUN_ENV;
    expect(resolveDistributed('env', 'cuda', noCount)?.storePrefix).toBe('/worker/attempt_0');
  });

  it('defaults the backend to nccl on CUDA and gloo on the CPU, and refuses nccl on the CPU', () => {
    const o = { rank: 1, worldSize: 2, masterPort: 29500 };
    expect(resolveDistributed(o, 'cuda')?.backend).toBe('nccl');
    expect(resolveDistributed(o, 'cpu')?.backend).toBe('gloo');
    expect(resolveDistributed({ ...o, backend: 'gloo' }, 'cuda')?.backend).toBe('gloo');
    expect(() => resolveDistributed({ ...o, backend: 'nccl' }, 'cpu')).toThrow(/'nccl' reduces CUDA tensors only.*'gloo' on the CPU/);
    expect(() => resolveDistributed({ ...o, backend: 'mpi' as 'gloo' }, 'cpu')).toThrow(/backend must be 'gloo' or 'nccl'; got "mpi"/);
  });

  it('fills in the defaults of options given in code', () => {
    expect(resolveDistributed({ rank: 3, worldSize: 4, masterPort: 1234 }, 'cpu')).toEqual({
      backend: 'gloo', rank: 3, worldSize: 4, localRank: 3, localWorldSize: 4, masterAddr: '127.0.0.1', masterPort: 1234,
      timeoutSeconds: 1800, isStoreServer: false, storePrefix: '',
    });
    // Ranks fill each machine in turn.
    expect(resolveDistributed({ rank: 5, worldSize: 8, localWorldSize: 4, masterPort: 1234 }, 'cpu')?.localRank).toBe(1);
  });

  it('refuses options out of range with RangeError or TypeError naming the option, as the Trainer does', () => {
    const o = { rank: 0, worldSize: 2, masterPort: 29500 };
    expect(() => resolveDistributed({ ...o, rank: 2 }, 'cpu')).toThrow(new RangeError('distributed.rank must be an integer from 0 to 1 (worldSize - 1); got 2'));
    expect(() => resolveDistributed({ ...o, worldSize: 0 }, 'cpu')).toThrow(/^distributed.worldSize must be an integer from 1/);
    expect(() => resolveDistributed({ ...o, rank: 0.5 }, 'cpu')).toThrow(RangeError);
    expect(() => resolveDistributed({ ...o, masterPort: 0 }, 'cpu')).toThrow(/^distributed.masterPort must be an integer from 1 to 65535; got 0/);
    expect(() => resolveDistributed({ ...o, masterAddr: ' ' }, 'cpu')).toThrow(/^distributed.masterAddr must name a host/);
    expect(() => resolveDistributed({ ...o, timeoutSeconds: -1 }, 'cpu')).toThrow(/^distributed.timeoutSeconds must be a positive number; got -1/);
    expect(() => resolveDistributed({ ...o, localWorldSize: 3 }, 'cpu')).toThrow(/^distributed.localWorldSize must be an integer from 1 to 2/);
    expect(() => resolveDistributed({ ...o, localRank: 2 }, 'cpu')).toThrow(/^distributed.localRank must be an integer from 0 to 1/);
    expect(() => resolveDistributed('ENV' as 'env', 'cpu')).toThrow(TypeError);
  });
});

describe('perRankBatchSize', () => {
  it('splits the global batch evenly', () => {
    expect(perRankBatchSize(128, 2)).toBe(64);
    expect(perRankBatchSize(128, 1)).toBe(128);
    expect(perRankBatchSize(24, 3)).toBe(8);
  });

  it('refuses a batch that does not divide, naming --batch-size, batchSize and the world size', () => {
    expect(() => perRankBatchSize(100, 3)).toThrow(/^--batch-size \(batchSize\) 100 is the global batch and must divide evenly across the 3 processes \(world size 3\); use a multiple of 3, e.g. 99 or 102$/);
  });

  it('refuses a share of fewer than two images (BatchNorm)', () => {
    expect(() => perRankBatchSize(4, 4)).toThrow(/gives each of the 4 processes \(world size 4\) 1 image; BatchNorm needs 2 per process, so use at least 8/);
  });
});

describe('the CLI side', () => {
  it('tells workers from single processes, and rank 0 owns the run folder', () => {
    expect(isWorker({})).toBe(false);
    expect(isWorker({ WORLD_SIZE: '1' })).toBe(false);
    expect(isWorker({ WORLD_SIZE: '2' })).toBe(true);
    expect(ownsRunFolder({})).toBe(true);
    expect(ownsRunFolder({ WORLD_SIZE: '1', RANK: '0' })).toBe(true);
    expect(ownsRunFolder({ WORLD_SIZE: '2', RANK: '0' })).toBe(true);
    expect(ownsRunFolder({ WORLD_SIZE: '2', RANK: '1' })).toBe(false);
  });

  it("passes the worker's arguments on without the launcher's flags", () => {
    expect(workerArgv(['train', '--nproc-per-node', '2', '--quick', '--master-port=1234', '--master-addr', 'h', '--dist-backend', 'gloo', '--out', 'x']))
      .toEqual(['train', '--quick', '--dist-backend', 'gloo', '--out', 'x']);
    expect(workerArgv(['train', '--nproc-per-node=4', '--', '--nproc-per-node'])).toEqual(['train', '--', '--nproc-per-node']);
  });

  const parse = (args: string[]) => addDistributedOptions(new Command().exitOverride().configureOutput({ writeErr: () => undefined })).parse(args, { from: 'user' }).opts();

  it("gives the Trainer 'env', or the environment with --dist-backend and --dist-timeout over it", () => {
    expect(distributedTrainerOption(parse([]), {})).toBeUndefined();
    expect(distributedTrainerOption(parse(['--dist-backend', 'gloo']), {})).toBeUndefined();
    expect(distributedTrainerOption(parse([]), LAUNCHER_ENV)).toBe('env');
    expect(distributedTrainerOption(parse(['--dist-backend', 'gloo', '--dist-timeout', '60']), TORCHRUN_ENV)).toEqual({
      ...distributedFromEnv(TORCHRUN_ENV), backend: 'gloo', timeoutSeconds: 60,
    });
    // Resolved as the Trainer would, the agent's store survives the overrides.
    const o = distributedTrainerOption(parse(['--dist-timeout', '60']), TORCHRUN_ENV);
    expect(resolveDistributed(o, 'cuda')).toMatchObject({ backend: 'nccl', timeoutSeconds: 60, storePrefix: '/worker/attempt_2', isStoreServer: false });
  });

  it('reports a broken environment as a usage error', () => {
    expect(() => distributedTrainerOption(parse([]), { ...LAUNCHER_ENV, RANK: '7' })).toThrow(UsageError);
  });

  it('checks the launcher flags as commander options', () => {
    expect(() => parse(['--nproc-per-node', '0'])).toThrow(/expected an integer from 1 to 256/);
    expect(() => parse(['--nproc-per-node', '257'])).toThrow(/expected an integer from 1 to 256/);
    expect(() => parse(['--master-port', '65536'])).toThrow(/expected an integer from 1 to 65535/);
    expect(() => parse(['--dist-backend', 'mpi'])).toThrow(/Allowed choices are gloo, nccl/);
    expect(() => parse(['--dist-timeout', '0'])).toThrow(/expected a number > 0/);
    expect(parse([])).toMatchObject({ masterAddr: '127.0.0.1' });
  });
});
