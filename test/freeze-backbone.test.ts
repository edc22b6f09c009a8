// Linear probing (Trainer freezeBackbone, train --freeze-backbone), against PyTorch: from the same
// weights and batches, training only the classifier ends where torchvision's fine-tuning
// tutorial's feature extraction ends (requires_grad off outside the classifier, Adam over the rest,
// here with the backbone's BatchNorm in eval mode), the backbone's parameters and BatchNorm
// statistics stay bit for bit, and the model gets its gradients back afterwards.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { findCheckpoint, modelFile } from '../lib/checkpoint';
import { freePort } from '../lib/distributed/free-port';
import { createModel, ModelName, Trainer } from '../lib';
import { PYTHON, requirePythonTorch } from './helpers/python';
import { readTensors, relativeDifference } from './helpers/tensors';

jest.setTimeout(600_000);

const DDP_ORACLE = path.join(__dirname, 'oracle', 'ddp.py');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-freeze-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Deterministic pseudo-random images, labels cycling through the 10 classes. */
function images(count: number, size: number): { images: Uint8Array; labels: Uint8Array } {
  const data = new Uint8Array(count * 3 * size * size);
  let state = 2024;
  for (let i = 0; i < data.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    data[i] = state >>> 24;
  }
  return { images: data, labels: Uint8Array.from({ length: count }, (_, i) => (i * 3) % 10) };
}

// Inception V3 with its aux head (which needs 299x299 crops), so that AuxLogits.fc trains too.
const cases: Array<{ model: ModelName; modelOptions: Record<string, unknown>; size: number; count: number; batch: number; classifier: string[] }> = [
  { model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, size: 32, count: 32, batch: 8, classifier: ['fc'] },
  { model: 'inception_v3', modelOptions: { numClasses: 10, dropout: 0 }, size: 299, count: 8, batch: 4, classifier: ['fc', 'AuxLogits.fc'] },
];

describe('freezeBackbone: only the classifier trains, as in PyTorch', () => {
  it.each(cases)('$model', async ({ model: name, modelOptions, size, count, batch, classifier }) => {
    const dir = fs.mkdtempSync(path.join(tmp, `${name}-`));
    const lr = 1e-2;
    const set = images(count, size);
    fs.writeFileSync(path.join(dir, 'images.u8'), set.images);
    fs.writeFileSync(path.join(dir, 'labels.u8'), set.labels);

    const model = createModel(name, modelOptions as never);
    const fullCount = model.parameterCount();
    expect(model.classifierModules()).toEqual(classifier);
    await model.saveSafetensors(path.join(dir, 'initial.safetensors'));
    const split = { ...set, count, channels: 3, height: size, width: size };
    const trainer = new Trainer({
      model, dataset: { name: 'parity', classNames: Array.from({ length: 10 }, (_, i) => `class ${i}`), train: split, val: split, test: split },
      epochs: 1, batchSize: batch, optimizer: { lr }, device: 'cpu', threads: 2, seed: 0, outDir: path.join(dir, 'run'),
      preprocessing: { crop: size, resize: size, evalResize: size, flip: false }, freezeBackbone: true,
    });
    await trainer.fit();
    trainer.dispose();
    // The session gave the backbone its gradients back.
    expect(model.parameterCount()).toBe(fullCount);
    model.dispose();

    requirePythonTorch();
    const port = await freePort('127.0.0.1');
    const r = spawnSync(PYTHON, [DDP_ORACLE, 'train', '--model', name, '--options', JSON.stringify(modelOptions), '--dir', dir,
      '--world', '1', '--batch', String(batch), '--lr', String(lr), '--seed', '0', '--size', String(size), '--port', String(port),
      '--freeze-backbone'], { encoding: 'utf8' });
    expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });

    const ours = await readTensors(modelFile(findCheckpoint(path.join(dir, 'run', 'checkpoints'), 'last')!));
    const theirs = await readTensors(path.join(dir, 'python.safetensors'));
    const initial = await readTensors(path.join(dir, 'initial.safetensors'));
    expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
    const inClassifier = (key: string) => classifier.some((m) => key.startsWith(`${m}.`));
    const changed: string[] = [];
    let worst = { name: '', difference: 0 };
    for (const [key, tensor] of ours) {
      const difference = relativeDifference(tensor, theirs.get(key)!);
      if (difference > worst.difference) worst = { name: key, difference };
      if (relativeDifference(tensor, initial.get(key)!) > 0) changed.push(key);
    }
    // Exactly the classifier moved (running statistics and num_batches_tracked included: none of
    // the backbone's changed), and it moved as PyTorch's did.
    expect(changed.sort()).toEqual([...ours.keys()].filter(inClassifier).sort());
    // Inception V3 at 299x299: on an AMD Zen 5 machine fc.weight ends 5.1e-4 (relative) from PyTorch's,
    // the same figure to the last digit with the code of commit 362e367 as with later code, so the two
    // sides' kernels round differently on that CPU and Adam's early steps (about lr times the sign of
    // each gradient) magnify it. Xception keeps 1e-4 (4.7e-6 there).
    expect(worst.difference).toBeLessThan(name === 'inception_v3' ? 1e-3 : 1e-4);
  });
});
