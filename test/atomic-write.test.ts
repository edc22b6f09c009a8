// writeFileAtomic: concurrent writers of one file never mix their contents, every write is flushed
// (the file before the rename, the folder after it), and temporary files of dead processes are
// cleaned up.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { removeStaleTemporaries, writeFileAtomic } from '../lib/atomic-write';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-atomic-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => jest.restoreAllMocks());

/** A pid that is certainly not running: a child that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

describe('writeFileAtomic', () => {
  it('many concurrent writes of different content to one file leave exactly one of them, whole', async () => {
    const file = path.join(tmp, 'shared.bin');
    for (let round = 0; round < 5; round++) {
      // 64 writers in the same millisecond, each with its own 256 KB content.
      const contents = Array.from({ length: 64 }, (_, i) => Buffer.alloc(256 * 1024, (round * 64 + i) % 251));
      await Promise.all(contents.map((c) => writeFileAtomic(file, c)));
      const result = fs.readFileSync(file);
      expect(contents.some((c) => c.equals(result))).toBe(true);
    }
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('shared.bin'))).toEqual(['shared.bin']);
  });

  it('flushes the temporary file before the rename and the folder after it', async () => {
    const folder = path.join(tmp, 'flushed');
    const file = path.join(folder, 'data.json');
    const events: string[] = [];
    const open = fs.promises.open;
    jest.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
      const handle = await open(...args);
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        events.push(`sync ${path.relative(folder, String(args[0])) || '.'}`);
        return sync();
      };
      return handle;
    });
    const rename = fs.promises.rename;
    jest.spyOn(fs.promises, 'rename').mockImplementation(async (from, to) => {
      events.push(`rename -> ${path.relative(folder, String(to))}`);
      return rename(from, to);
    });
    await writeFileAtomic(file, '{"a":1}');
    expect(events).toEqual([expect.stringMatching(/^sync data\.json\.tmp-\d+-[0-9a-f]+$/), 'rename -> data.json', 'sync .']);
    expect(fs.readFileSync(file, 'utf8')).toBe('{"a":1}');
  });

  it('writes a list of chunks one after another, empty ones and views into larger buffers included', async () => {
    const file = path.join(tmp, 'chunks.bin');
    const backing = Buffer.from('0123456789');
    const chunks = [Buffer.from('ab'), new Uint8Array(0), backing.subarray(3, 7), Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251)), Buffer.from('z')];
    await writeFileAtomic(file, chunks);
    expect(fs.readFileSync(file).equals(Buffer.concat(chunks))).toBe(true);
    await writeFileAtomic(file, []);
    expect(fs.statSync(file).size).toBe(0);
  });

  it('leaves the old content and no temporary file when the write fails', async () => {
    const file = path.join(tmp, 'kept.txt');
    await writeFileAtomic(file, 'old');
    jest.spyOn(fs.promises, 'rename').mockRejectedValue(Object.assign(new Error('EIO: simulated'), { code: 'EIO' }));
    await expect(writeFileAtomic(file, 'new')).rejects.toThrow(/simulated/);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(tmp).filter((n) => n.startsWith('kept.txt'))).toEqual(['kept.txt']);
  });
});

describe('removeStaleTemporaries', () => {
  it("removes the temporary files and folders of dead processes, keeps live ones' and everything else", async () => {
    const folder = path.join(tmp, 'stale');
    fs.mkdirSync(path.join(folder, 'checkpoints'), { recursive: true });
    const dead = deadPid();
    const live = process.ppid;
    const names = {
      deadFile: `metrics.json.tmp-${dead}-0123abcd`,
      deadFolder: `.best.tmp-${dead}`,
      liveFile: `history.json.tmp-${live}-ffee`,
      ownFolder: `.last.tmp-${process.pid}`,
      other: 'notes.tmp-backup',
    };
    for (const [key, name] of Object.entries(names)) {
      if (key.endsWith('Folder')) {
        fs.mkdirSync(path.join(folder, name));
        fs.writeFileSync(path.join(folder, name, 'model.safetensors'), 'partial');
      } else {
        fs.writeFileSync(path.join(folder, name), 'partial');
      }
    }
    const removed = await removeStaleTemporaries(folder);
    expect(removed.sort()).toEqual([names.deadFolder, names.deadFile].sort());
    expect(fs.readdirSync(folder).sort()).toEqual(['checkpoints', names.liveFile, names.ownFolder, names.other].sort());
    expect(await removeStaleTemporaries(path.join(tmp, 'missing'))).toEqual([]);
  });
});
