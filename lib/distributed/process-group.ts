// The process group this process trains in: joined once and kept for the life of the process, as
// torch.distributed's default group is, so that the Trainers a process runs one after another
// (compare trains two models) use the same rendezvous instead of racing to rebuild it on one port.
import { native, NativeProcessGroupHandle } from '../native';
import type { DistributedSettings } from './settings';

let joined: { key: string; group: Promise<NativeProcessGroupHandle> } | undefined;

/** Joins the group `s` describes (once per process; resolves when every rank has joined). */
export function joinProcessGroup(s: DistributedSettings): Promise<NativeProcessGroupHandle> {
  const { backend, rank, worldSize, masterAddr, masterPort, isStoreServer, storePrefix, timeoutSeconds } = s;
  const config = { backend, rank, worldSize, masterAddr, masterPort, isStoreServer, storePrefix, timeoutSeconds };
  const key = JSON.stringify(config);
  if (joined) {
    if (joined.key !== key) {
      throw new Error(`this process already belongs to the process group ${joined.key}; a process joins one group ` +
        '(as torch.distributed\'s default group), so every data-parallel Trainer in it must use the same settings');
    }
    return joined.group;
  }
  const group = native().createProcessGroup(config);
  joined = { key, group };
  // A failed rendezvous can be tried again.
  group.catch(() => {
    if (joined?.group === group) joined = undefined;
  });
  return group;
}
