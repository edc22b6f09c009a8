// Whether a process of this machine is still running: what tells a stale lock or a dead writer's
// temporary file from one in use.

/** True when process `pid` runs on this machine (or may: a process of another user counts as running). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
