// Runs write TensorBoard event files into their run folder: the training figures at each progress
// report and the epoch and test figures, read back by the independent reader (test/oracle/tfevents.py).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Trainer } from '../lib/trainer';
import { scalars } from './helpers/tfevents';

jest.setTimeout(300_000);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-curves-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

it('a run writes its curves for TensorBoard, one event file per fit(), the figures equal to history.json', async () => {
  const outDir = path.join(tmp, 'run');
  const options = {
    model: 'xception' as const, modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic' as const,
    synthetic: { trainSize: 64, valSize: 16, testSize: 16 }, batchSize: 16, preprocessing: { crop: 32, resize: 36 },
    device: 'cpu' as const, threads: 2, outDir,
  };
  const first = new Trainer({ ...options, epochs: 1 });
  await first.fit();
  first.dispose();
  const resumed = new Trainer({ ...options, epochs: 2 });
  await resumed.fit({ resume: true });
  resumed.dispose();

  const files = fs.readdirSync(outDir).filter((f) => f.startsWith('events.out.tfevents.')).map((f) => path.join(outDir, f)).sort();
  expect(files).toHaveLength(2);
  const all = scalars(...files);
  const steps = (tag: string) => all.filter((s) => s.tag === tag).map((s) => s.step);
  // 4 batches an epoch, a report after each on the CPU, stepped by the global batch.
  expect(steps('train/loss')).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  for (const tag of ['train/accuracy', 'train/lr', 'train/loss_scale', 'train/images_per_second']) expect(steps(tag)).toHaveLength(8);
  expect(steps('epoch/val_accuracy')).toEqual([1, 2]);
  const history = JSON.parse(fs.readFileSync(path.join(outDir, 'history.json'), 'utf8')) as { epochs: Array<{ valAccuracy: number; trainLoss: number }> };
  expect(all.filter((s) => s.tag === 'epoch/val_accuracy').map((s) => s.value)).toEqual(history.epochs.map((e) => Math.fround(e.valAccuracy)));
  expect(all.filter((s) => s.tag === 'epoch/train_loss').map((s) => s.value)).toEqual(history.epochs.map((e) => Math.fround(e.trainLoss)));
  const metrics = JSON.parse(fs.readFileSync(path.join(outDir, 'metrics.json'), 'utf8')) as { testAccuracy: number };
  // The first fit() ended too, so each writes its test figures at its last epoch.
  expect(all.filter((s) => s.tag === 'test/accuracy').map((s) => s.step)).toEqual([1, 2]);
  expect(all.filter((s) => s.tag === 'test/accuracy').at(-1)!.value).toBe(Math.fround(metrics.testAccuracy));
});
