// One run per folder at a time. A run holds `<folder>/.lock` for as long as it writes there: a small
// JSON file naming its owner (pid, host, start time, a random token), created exclusively so that of
// two runs started together exactly one gets it; the other fails with an error naming the owner.
// A lock left by a process of this machine that no longer runs (killed, crashed) is taken over,
// with a warning. The lock is released when the run ends, fails, or the process exits.
//
// The lock is re-entrant within one async call chain (AsyncLocalStorage): the CLI locks the folder
// before it checks and writes command.json, and the Trainer that it then runs locks it again for
// fit(); a second Trainer of the same process started elsewhere on the same folder is refused.
import { AsyncLocalStorage } from 'async_hooks';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { temporaryName } from './atomic-write';
import { threadId } from 'worker_threads';
import { isProcessAlive } from './process-alive';

export const LOCK_FILE = '.lock';

/** What a lock file holds. */
export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  startedAt: string;
  /** The worker thread (0: the main thread). */
  thread?: number;
  /** Tells this lock from an older one of a process that had the same pid. */
  token: string;
}

export class RunLockedError extends Error {
  constructor(readonly folder: string, readonly owner: LockOwner | undefined, reason: string) {
    super(`${folder} is in use by another run: ${reason}`);
    this.name = 'RunLockedError';
  }
}

export interface RunLockOptions {
  /** Called when a dead process's lock is taken over. Default: a process warning. */
  onTakeOver?: (owner: LockOwner | undefined, lockFile: string) => void;
}

export interface RunLock {
  readonly folder: string;
  readonly file: string;
  release(): void;
}

/** A lock file that is still empty or half written (by a writer without hard links) this long is abandoned. */
const UNREADABLE_GRACE_MS = 10_000;
/** Tries before giving up on a lock file that keeps changing (about 10 s of waits at most). */
const MAX_ATTEMPTS = 200;

/** The locks this process holds, by lock file. */
const held = new Map<string, LockOwner>();
/** The folders locked by the current async call chain. */
const chain = new AsyncLocalStorage<ReadonlySet<string>>();
let exitHookInstalled = false;

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Creates `file` holding `text` if it does not exist; false if it does. The text is written to a
 * temporary file that is then hard-linked into place, so a lock file is never seen half written.
 */
function createExclusive(file: string, text: string): boolean {
  const temp = temporaryName(file);
  fs.writeFileSync(temp, text, { flag: 'wx' });
  try {
    fs.linkSync(temp, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // File systems without hard links: create it exclusively and write it.
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw error;
    let fd: number;
    try {
      fd = fs.openSync(file, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    }
    try {
      fs.writeSync(fd, text);
    } finally {
      fs.closeSync(fd);
    }
    return true;
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

interface LockContent {
  text: string;
  owner?: LockOwner;
  modifiedMs: number;
}

function readLock(file: string): LockContent | undefined {
  let text: string;
  let modifiedMs: number;
  try {
    text = fs.readFileSync(file, 'utf8');
    modifiedMs = fs.statSync(file).mtimeMs;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let owner: LockOwner | undefined;
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (Number.isSafeInteger(o.pid) && typeof o.host === 'string' && typeof o.token === 'string') owner = o as LockOwner;
  } catch {
    owner = undefined;
  }
  return { text, owner, modifiedMs };
}

/** Why a lock is live (a one-line reason), or undefined when its owner is gone. */
function liveReason(content: LockContent, file: string): string | undefined {
  const o = content.owner;
  const remove = `if it is not running, delete ${file}`;
  if (!o) {
    return Date.now() - content.modifiedMs > UNREADABLE_GRACE_MS ? undefined : `its lock file ${file} is being written`;
  }
  const since = typeof o.startedAt === 'string' ? ` since ${o.startedAt}` : '';
  if (o.host !== os.hostname()) {
    return `process ${o.pid} on ${o.host}${since} holds ${file} (another machine: ${remove})`;
  }
  if (o.pid === process.pid) {
    if ((o.thread ?? 0) !== threadId) return `worker thread ${o.thread ?? 0} of this process holds ${file}`;
    // Our pid and thread but not our token: a previous process that had the same pid (e.g. in a container).
    return [...held.values()].some((h) => h.token === o.token) ? `this process holds ${file}` : undefined;
  }
  return isProcessAlive(o.pid) ? `process ${o.pid} on ${o.host}${since} holds ${file} (${remove})` : undefined;
}

/** Removes the stale lock `stale` unless someone replaced it meanwhile; one process at a time. */
function takeOver(file: string, stale: LockContent, ownText: string, options: RunLockOptions): void {
  const guard = `${file}.takeover`;
  if (!createExclusive(guard, ownText)) {
    // Another process is taking it over now (or died doing so: then its guard is stale too).
    const other = readLock(guard);
    if (other && liveReason(other, guard) === undefined) fs.rmSync(guard, { force: true });
    else sleep(10);
    return;
  }
  try {
    const again = readLock(file);
    if (again?.text !== stale.text) return;
    fs.rmSync(file, { force: true });
  } finally {
    fs.rmSync(guard, { force: true });
  }
  (options.onTakeOver ?? defaultTakeOverWarning)(stale.owner, file);
}

function defaultTakeOverWarning(owner: LockOwner | undefined, file: string): void {
  process.emitWarning(describeTakeOver(owner, file), 'RunLockWarning');
}

/** The warning for a lock taken over, e.g. for the CLI to print. */
export function describeTakeOver(owner: LockOwner | undefined, file: string): string {
  const who = owner ? `process ${owner.pid}${owner.startedAt ? ` (started ${owner.startedAt})` : ''}, which no longer runs` : 'a process that left it unreadable';
  return `took over ${file}, left by ${who}`;
}

function releaseAllOnExit(): void {
  for (const [file, owner] of held) {
    try {
      if (readLock(file)?.owner?.token === owner.token) fs.rmSync(file, { force: true });
    } catch {
      // Exiting anyway; a lock left behind is taken over by the next run.
    }
  }
}

/**
 * Locks `folder` (created if missing) for this process; throws RunLockedError when another run
 * holds it. Release it with release(); it is released anyway when the process exits.
 */
export function acquireRunLock(folder: string, options: RunLockOptions = {}): RunLock {
  const resolved = path.resolve(folder);
  const firstCreated = fs.mkdirSync(resolved, { recursive: true });
  const file = path.join(fs.realpathSync(resolved), LOCK_FILE);
  const owner: LockOwner = {
    pid: process.pid, host: os.hostname(), startedAt: new Date().toISOString(), thread: threadId, token: randomBytes(8).toString('hex'),
  };
  const text = JSON.stringify(owner) + '\n';
  try {
    if (held.has(file)) throw new RunLockedError(resolved, held.get(file), 'another run of this process holds it');
    for (let attempt = 1; ; attempt++) {
      if (attempt > MAX_ATTEMPTS) throw new RunLockedError(resolved, undefined, `${file} keeps changing; try again`);
      if (createExclusive(file, text)) break;
      const current = readLock(file);
      if (!current) continue; // released meanwhile
      const reason = liveReason(current, file);
      if (reason === undefined) takeOver(file, current, text, options);
      else if (current.owner) throw new RunLockedError(resolved, current.owner, reason);
      else sleep(50); // being written by a writer without hard links
    }
  } catch (error) {
    removeCreatedFolders(resolved, firstCreated);
    throw error;
  }
  held.set(file, owner);
  if (!exitHookInstalled) {
    process.on('exit', releaseAllOnExit);
    exitHookInstalled = true;
  }
  let released = false;
  return {
    folder: resolved,
    file,
    release() {
      if (released) return;
      released = true;
      held.delete(file);
      if (readLock(file)?.owner?.token === owner.token) fs.rmSync(file, { force: true });
      removeCreatedFolders(resolved, firstCreated);
    },
  };
}

/** Removes `folder` and its parents up to `firstCreated` (the first folder mkdir made) while they are empty. */
function removeCreatedFolders(folder: string, firstCreated: string | undefined): void {
  if (!firstCreated) return;
  for (let dir = folder; dir.startsWith(firstCreated); dir = path.dirname(dir)) {
    try {
      fs.rmdirSync(dir);
    } catch {
      return;
    }
    if (dir === firstCreated) return;
  }
}

/**
 * Runs `work` holding the lock of `folder`, then releases it (also when `work` fails). Nested
 * calls for the same folder in the same async call chain share the outer lock.
 */
export async function withRunLock<T>(folder: string, work: () => Promise<T>, options: RunLockOptions = {}): Promise<T> {
  const resolved = path.resolve(folder);
  const outer = chain.getStore();
  if (outer?.has(resolved)) return work();
  const lock = acquireRunLock(resolved, options);
  try {
    return await chain.run(new Set([...(outer ?? []), resolved]), work);
  } finally {
    lock.release();
  }
}
