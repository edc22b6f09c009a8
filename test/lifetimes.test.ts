// Explicit lifetimes at the native boundary: disposing a Trainer during fit() writes nothing from a
// freed or rebuilt model, a model that a Trainer is training refuses outside calls (and fit() never
// fails because of one), dispose() frees native memory at once, dropped objects are collected
// because V8 is told their size, fit() reads its position without copying the optimizer, and
// checkpoints are written from the tensors' own memory (getState(true)) rather than copies.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeviceDataset, createSyntheticDataset, InceptionV3, runtimeInfo, Xception } from '../lib';
import { findCheckpoint, readCheckpointState } from '../lib/checkpoint';
import { ModelError } from '../lib/errors';
import type { NativeModelHandle, NativeTrainerHandle } from '../lib/native';
import { readSafetensors } from '../lib/safetensors';
import { Trainer, TrainerOptions } from '../lib/trainer';

jest.setTimeout(300_000);

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-lifetimes-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A run whose epochs take about a second: a one-block Xception on 32x32 synthetic images. */
function tiny(outDir: string, extra: Partial<TrainerOptions> = {}): TrainerOptions {
  return {
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic',
    synthetic: { trainSize: 64, valSize: 16, testSize: 16 }, epochs: 3, batchSize: 8,
    preprocessing: { crop: 32, resize: 36 }, device: 'cpu', threads: 2, outDir: path.join(dir, outDir), ...extra,
  };
}

const input = (n = 2) => ({ shape: [n, 3, 32, 32], data: new Float32Array(n * 3 * 32 * 32).fill(0.1) });
const rssMiB = () => process.memoryUsage().rss / 2 ** 20;

describe('Trainer.dispose() during fit()', () => {
  it('makes fit() reject at the next batch and writes nothing after it', async () => {
    const trainer = new Trainer(tiny('dispose-during-fit'));
    const checkpoints = path.join(trainer.outDir, 'checkpoints');
    let disposedAt: number | undefined;
    trainer.on('batch', (e) => {
      // In the second epoch, once the first one's checkpoint is on disk.
      if (e.epoch === 1 && e.batch === 2 && disposedAt === undefined) {
        disposedAt = Date.now();
        trainer.dispose();
      }
    });
    await expect(trainer.fit()).rejects.toThrow(/disposed/);
    expect(disposedAt).toBeDefined();
    // The checkpoint is the first epoch's, untouched since the dispose: one epoch of history.
    const last = findCheckpoint(checkpoints, 'last')!;
    const state = await readCheckpointState<{ history: unknown[] }>(last);
    expect(state.meta.history).toHaveLength(1);
    expect(state.train.position).toMatchObject({ epoch: 1, nextBatch: 0 });
    expect(fs.statSync(path.join(last, 'model.safetensors')).mtimeMs).toBeLessThan(disposedAt!);
    expect(fs.existsSync(path.join(trainer.outDir, 'metrics.json'))).toBe(false);
    // Nothing is rebuilt afterwards.
    await expect(trainer.fit()).rejects.toThrow(/disposed/);
    await expect(trainer.evaluate('val')).rejects.toThrow(/disposed/);
  });

  it('before fit() resolves, stops a fit() that is still loading its data', async () => {
    const trainer = new Trainer(tiny('dispose-before-prepare'));
    const fit = trainer.fit();
    trainer.dispose();
    await expect(fit).rejects.toThrow(/disposed/);
    expect(fs.existsSync(path.join(trainer.outDir, 'checkpoints'))).toBe(false);
  });
});

describe('a model being trained', () => {
  it('refuses forward() and other outside calls while fit() runs, and fit() completes', async () => {
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 1 });
    const trainer = new Trainer({ ...tiny('forward-during-fit'), model, epochs: 2 });
    const refusals: unknown[] = [];
    trainer.on('batch', (e) => {
      if (e.batch !== 3) return;
      model.forward(input()).catch((error: unknown) => refusals.push(error));
      for (const call of [() => model.eval(), () => model.to('cpu'), () => model.dispose()]) {
        try {
          call();
        } catch (error) {
          refusals.push(error);
        }
      }
    });
    const history = await trainer.fit();
    expect(history.epochs).toHaveLength(2);
    expect(history.interrupted).toBe(false);
    expect(refusals).toHaveLength(2 * 4);
    for (const error of refusals) {
      expect(error).toBeInstanceOf(ModelError);
      expect((error as Error).message).toMatch(/refused while Trainer\.fit\(\) trains this model/);
    }
    // Once fit() is over the model is the user's again.
    model.eval();
    const logits = await model.forward(input());
    expect(logits.shape).toEqual([2, 10]);
    trainer.dispose();
    model.dispose();
  });

  it('lets a forward() that started before fit() finish first, then trains', async () => {
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 1 }).eval();
    const trainer = new Trainer({ ...tiny('forward-before-fit'), model, epochs: 1 });
    await trainer.getModel();
    const pass = model.forward(input(16));
    const history = await trainer.fit();
    await expect(pass).resolves.toMatchObject({ shape: [16, 10] });
    expect(history.epochs).toHaveLength(1);
    trainer.dispose();
    model.dispose();
  });
});

describe('native memory', () => {
  it('Trainer.dispose() and model.dispose() free the network, optimizer state and images at once', async () => {
    const before = runtimeInfo().liveNativeObjects;
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 1 });
    const trainer = new Trainer({ ...tiny('free-at-once'), model, epochs: 1 });
    await trainer.fit();
    expect(runtimeInfo().liveNativeObjects).toEqual({
      networks: before.networks + 1, datasets: before.datasets + 3, trainingSessions: before.trainingSessions + 1, processGroups: before.processGroups,
    });
    // The Trainer lets go of the session and the datasets; the model you passed in stays yours...
    trainer.dispose();
    expect(runtimeInfo().liveNativeObjects).toEqual({ ...before, networks: before.networks + 1 });
    // ...until you dispose it, which now frees its weights (the session no longer holds them).
    model.dispose();
    expect(runtimeInfo().liveNativeObjects).toEqual(before);
  });

  it('a Trainer that built its model frees it too', async () => {
    const before = runtimeInfo().liveNativeObjects;
    const trainer = new Trainer(tiny('free-own-model'));
    await trainer.getModel();
    expect(runtimeInfo().liveNativeObjects.networks).toBe(before.networks + 1);
    trainer.dispose();
    expect(runtimeInfo().liveNativeObjects).toEqual(before);
  });

  it('V8 is told the size of native objects, so dropped ones are collected before memory piles up', async () => {
    const before = rssMiB();
    let peak = before;
    for (let i = 0; i < 24; i++) {
      // 83 MB of weights each, dropped without dispose(); 24 of them would hold 2 GB.
      new Xception({ numClasses: 10 }).parameterCount();
      await new Promise((resolve) => setImmediate(resolve));
      peak = Math.max(peak, rssMiB());
    }
    expect(peak - before).toBeLessThan(1000);
  });

  it('forward() in a loop keeps its memory flat: its input copy is not left in the JS thread\'s heap', async () => {
    // Before the copy got pages of its own, RSS grew by the input's size on every call (0.86 MB here),
    // without bound: 130 MB over these 150 calls.
    const net = new InceptionV3({ numClasses: 10, auxLogits: false });
    try {
      net.eval();
      const x = { shape: [8, 3, 96, 96], data: new Float32Array(8 * 3 * 96 * 96).fill(0.5) };
      for (let i = 0; i < 30; i++) await net.forward(x);
      const before = rssMiB();
      for (let i = 0; i < 150; i++) await net.forward(x);
      expect(rssMiB() - before).toBeLessThan(30);
    } finally {
      net.dispose();
    }
  }, 120_000);

  it('a disposed dataset refuses further use with a clear error', async () => {
    const set = createSyntheticDataset({ trainSize: 4, valSize: 2, testSize: 2 });
    const dataset = DeviceDataset.fromImageSet(set.train);
    expect(dataset.size).toBe(4);
    dataset.dispose();
    expect(() => dataset.size).toThrow(/disposed/);
    await expect(dataset.evalBatch([0, 1], { crop: 32 })).rejects.toThrow(/disposed/);
  });
});

describe('fit() bookkeeping', () => {
  it('reads the optimizer state once per checkpoint written, without copying it, and not to read its position', async () => {
    const trainer = new Trainer(tiny('state-copies', { epochs: 2 }));
    await trainer.getModel();
    // Count the reads through a proxy of the native session (its methods are read-only).
    const holder = trainer as unknown as { session: NativeTrainerHandle };
    const session = holder.session;
    let shared = 0;
    let copies = 0;
    holder.session = new Proxy(session, {
      get(target, key) {
        const value = Reflect.get(target, key) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          if (key === 'getState') {
            if (args[0] === true) shared += 1;
            else copies += 1;
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const history = await trainer.fit();
    const bestUpdates = history.epochs.filter((e, i) => e.valAccuracy > Math.max(-1, ...history.epochs.slice(0, i).map((p) => p.valAccuracy))).length;
    expect(bestUpdates).toBeGreaterThanOrEqual(1);
    // One read per epoch end (shared by 'last' and 'best'), written from the tensors' own memory.
    expect(shared).toBe(history.epochs.length);
    expect(copies).toBe(0);
    trainer.dispose();
  });

  it('fusedAdam is an option: recorded in the run, checked, and without effect on the CPU', async () => {
    expect(() => new Trainer(tiny('fused-bad', { fusedAdam: 'no' as unknown as boolean }))).toThrow(/fusedAdam must be true or false/);
    const trainer = new Trainer(tiny('fused-off', { epochs: 1, fusedAdam: false }));
    expect(trainer.resolvedOptions().fusedAdam).toBe(false);
    expect(new Trainer(tiny('fused-default')).resolvedOptions().fusedAdam).toBe(true);
    await trainer.fit();
    const history = JSON.parse(fs.readFileSync(path.join(trainer.outDir, 'history.json'), 'utf8'));
    expect(history.options.fusedAdam).toBe(false);
    trainer.dispose();
  });
});

describe('getState(true): the tensors\' own memory, for writing checkpoints', () => {
  const floats = (t: { data: ArrayBuffer }) => new Float32Array(t.data);

  it('holds the same values as a copy, follows changes of the weights, and outlives the model', () => {
    const model = new Xception({ numClasses: 10, middleFlowBlocks: 1 });
    const handle: NativeModelHandle = model.nativeHandle;
    const copy = handle.getState();
    const shared = handle.getState(true);
    expect(shared.map((t) => [t.name, t.dtype, t.shape])).toEqual(copy.map((t) => [t.name, t.dtype, t.shape]));
    shared.forEach((t, i) => expect(Buffer.from(t.data).equals(Buffer.from(copy[i].data))).toBe(true));

    // A view, not a copy: new weights show through it (a plain, contiguous fc weight), not through the copy.
    const fc = shared.findIndex((t) => t.name === 'fc.weight');
    expect(fc).toBeGreaterThanOrEqual(0);
    const before = floats(copy[fc]).slice();
    handle.setState([{ name: 'fc.weight', dtype: 'F32', shape: copy[fc].shape, data: new Uint8Array(new Float32Array(before.length).fill(0.25).buffer) }]);
    expect(floats(shared[fc]).every((v) => v === 0.25)).toBe(true);
    expect(floats(copy[fc])).toEqual(before);

    // The view keeps its tensor alive after the model is freed.
    model.dispose();
    global.gc?.();
    expect(floats(shared[fc]).every((v) => v === 0.25)).toBe(true);
  });

  it('a checkpoint written from it equals the weights saved with saveSafetensors', async () => {
    const trainer = new Trainer(tiny('shared-checkpoint', { epochs: 1 }));
    await trainer.fit();
    const model = await trainer.getModel();
    const last = findCheckpoint(path.join(trainer.outDir, 'checkpoints'), 'last')!;
    const saved = path.join(dir, 'shared-checkpoint.safetensors');
    await model.saveSafetensors(saved);
    const fromCheckpoint = await readSafetensors(path.join(last, 'model.safetensors'));
    const fromSave = await readSafetensors(saved);
    expect([...fromCheckpoint.tensors.keys()]).toEqual([...fromSave.tensors.keys()]);
    for (const [name, t] of fromSave.tensors) expect(Buffer.from(fromCheckpoint.tensors.get(name)!.data).equals(Buffer.from(t.data))).toBe(true);
    // The optimizer state too: its moments are those of the run, not zeros.
    const state = await readCheckpointState(last);
    const moments = state.optimizer.filter((t) => t.dtype === 'F32');
    expect(moments.length).toBeGreaterThan(0);
    expect(moments.some((t) => new Float32Array(t.data.slice().buffer).some((v) => v !== 0))).toBe(true);
    trainer.dispose();
  });
});
