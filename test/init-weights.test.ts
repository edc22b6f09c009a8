// Starting a run from weights (initWeights / --init-weights): the backbone comes from the file, a
// classifier of another shape starts fresh and the run says which tensors were left so; weights
// that do not fit the model are refused before anything is written (exit 2).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { InceptionV3, Xception } from '../lib';
import { readSafetensors } from '../lib/safetensors';
import { InitWeightsEvent, Trainer } from '../lib/trainer';

jest.setTimeout(300_000);

const CLI = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-init-weights-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const tensorBytes = async (file: string, name: string) => Buffer.from((await readSafetensors(file)).tensors.get(name)!.data);

it('Trainer({ initWeights }) loads the backbone of a 1000-class file into a 10-class model and reports the reset head', async () => {
  const source = new Xception({ numClasses: 1000, middleFlowBlocks: 1 });
  const file = path.join(tmp, 'imagenet-like.safetensors');
  await source.saveSafetensors(file);
  source.dispose();

  const trainer = new Trainer({
    model: 'xception', modelOptions: { numClasses: 10, middleFlowBlocks: 1 }, dataset: 'synthetic',
    synthetic: { trainSize: 32, valSize: 8, testSize: 8 }, epochs: 1, batchSize: 8, preprocessing: { crop: 32, resize: 36 },
    device: 'cpu', initWeights: file, outDir: path.join(tmp, 'run'),
  });
  const events: InitWeightsEvent[] = [];
  trainer.on('initWeights', (e: InitWeightsEvent) => events.push(e));
  const model = await trainer.getModel();
  expect(events).toHaveLength(1);
  expect(events[0].reset).toEqual(['fc.weight', 'fc.bias']);
  expect(events[0].loaded).toHaveLength(model.stateDictKeys().length - 2);
  expect(trainer.resolvedOptions().initWeights).toBe(file);
  // The backbone is the file's, byte for byte; the head is the 10-class model's own.
  const started = path.join(tmp, 'started.safetensors');
  await model.saveSafetensors(started);
  expect((await tensorBytes(started, 'conv1.weight')).equals(await tensorBytes(file, 'conv1.weight'))).toBe(true);
  expect((await readSafetensors(started)).tensors.get('fc.weight')!.shape).toEqual([10, 2048]);
  trainer.dispose();
});

describe('train --init-weights', () => {
  it('says what it loaded and what it left fresh, then trains', async () => {
    const source = new Xception({ numClasses: 1000 });
    const file = path.join(tmp, 'xception-1000.safetensors');
    await source.saveSafetensors(file);
    source.dispose();
    const r = spawnSync(process.execPath, [CLI, 'train', '--quick', '--train-limit', '32', '--epochs', '1', '--init-weights', file,
      '--out', path.join(tmp, 'cli-run')], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`initial weights from ${file}: 274 tensors loaded; left fresh (a classifier of another shape): fc.weight, fc.bias`);
  });

  it('weights of another model are refused before anything is written (exit 2, one line)', async () => {
    const other = new InceptionV3({ numClasses: 10, auxLogits: false, initWeights: false });
    const file = path.join(tmp, 'inception.safetensors');
    await other.saveSafetensors(file);
    other.dispose();
    const out = path.join(tmp, 'refused');
    const r = spawnSync(process.execPath, [CLI, 'train', '--quick', '--init-weights', file, '--out', out], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/cannot load .*inception\.safetensors into Xception/);
    expect(r.stdout).toBe('');
    expect(fs.existsSync(out)).toBe(false);
  });
});
