// `xception-torch evaluate`: rebuilds a run's Trainer from its checkpoint (same model, dataset,
// split, preprocessing and seed), loads the weights and evaluates one split.
import { Command, Option } from 'commander';
import * as path from 'path';
import { writeFileAtomic } from '../atomic-write';
import type { Device } from '../models';
import { EvaluationReport, formatEvaluation } from '../report/evaluation';
import { Trainer, TrainerOptions } from '../trainer';
import { device, folder, integer } from './options';
import { locateCheckpoint, readSavedRun, SavedRun } from './run-folder';
import { checkDevice } from './train';

export function addEvaluateOptions(cmd: Command): Command {
  cmd.requiredOption('--checkpoint <path>', 'a checkpoint folder (…/checkpoints/best or last) or a run folder (then its best checkpoint, else last)', folder);
  cmd.addOption(new Option('--split <name>', 'split to evaluate').choices(['test', 'val']).default('test'));
  cmd.option('--data-dir <dir>', "CIFAR-10 folder (default: the run's, else the cache)");
  cmd.addOption(new Option('--dataset <name>', "dataset (default: the run's)").choices(['cifar10', 'synthetic']));
  cmd.addOption(new Option('--device <device>', 'auto, cpu, cuda or cuda:N').argParser(device).default('auto'));
  cmd.option('--batch-size <n>', "evaluation batch size (default: the run's)", integer(1));
  cmd.option('--json', 'print JSON instead of tables');
  return cmd;
}

/** The Trainer options that reproduce the run's data and model on `device`. */
export function evaluationOptions(run: SavedRun, flags: { dataset?: string; dataDir?: string; device: Device; batchSize?: number }): TrainerOptions {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON written by the Trainer
  const o = run.meta.options as Record<string, any>;
  const dataset = flags.dataset ?? o.dataset;
  if (dataset !== 'cifar10' && dataset !== 'synthetic') {
    throw new Error(`the run in ${run.runDir} used the dataset '${String(dataset)}', which the CLI cannot load; pick one with --dataset`);
  }
  // The run's precision where it ran on the same kind of device; else the default for the device.
  const kind = (d: string) => (d.startsWith('cuda') ? 'cuda' : d);
  const sameKind = flags.device !== 'auto' && kind(flags.device) === kind(String(o.device));
  const batchSize = flags.batchSize ?? o.batchSize;
  return {
    model: run.meta.model,
    modelOptions: run.meta.modelOptions,
    dataset,
    dataDir: flags.dataDir ?? run.command?.dataDir,
    synthetic: o.synthetic ?? run.command?.synthetic,
    valSize: o.valSize,
    trainLimit: o.trainLimit ?? undefined,
    evalLimit: o.evalLimit ?? undefined,
    batchSize,
    evalBatchSize: batchSize,
    preprocessing: o.preprocessing,
    seed: o.seed,
    device: flags.device,
    amp: sameKind ? o.amp : 'auto',
    auxLossWeight: o.auxLossWeight,
    outDir: run.runDir,
  };
}

export async function runEvaluate(opts: Record<string, unknown>): Promise<number> {
  const folder = locateCheckpoint(opts.checkpoint as string);
  const run = await readSavedRun(folder);
  const flags = { dataset: opts.dataset as string | undefined, dataDir: opts.dataDir as string | undefined, device: opts.device as Device, batchSize: opts.batchSize as number | undefined };
  checkDevice(flags.device);
  const options = evaluationOptions(run, flags);
  const trainer = new Trainer(options);
  let report: EvaluationReport;
  try {
    await trainer.loadWeights(folder);
    const result = await trainer.evaluate(opts.split as 'test' | 'val');
    report = {
      checkpoint: folder,
      epoch: run.epoch,
      model: run.meta.model,
      dataset: options.dataset as string,
      ...result,
      perClassAccuracy: Object.fromEntries(result.classNames.map((c, i) => [c, result.perClassAccuracy[i]])),
    };
  } finally {
    trainer.dispose();
  }
  const file = path.join(run.runDir, `evaluation-${report.split}.json`);
  const json = JSON.stringify(report, null, 2) + '\n';
  await writeFileAtomic(file, json);
  if (opts.json) {
    process.stdout.write(json);
  } else {
    console.log(formatEvaluation(report));
    console.log(`\nwrote ${file}`);
  }
  return 0;
}
