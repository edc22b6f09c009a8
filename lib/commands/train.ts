// `xception-torch train`: its options, the run folder (lock, command record, config.yaml), progress
// on the terminal, Ctrl-C -> checkpoint. What the options resolve to: train-settings.ts.
import { Command, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../atomic-write';
import { findCheckpoint } from '../checkpoint';
import { REFERENCE_PREPROCESSING } from '../datasets/device-dataset';
import { IMAGE_FOLDER_DEFAULTS } from '../datasets/image-folder';
import { PRESET_NAMES } from '../images/presets';
import { Device, MODEL_NAMES } from '../models';
import { formatDuration, TrainingProgress } from '../report/progress';
import { packageVersion } from '../paths';
import { cudaIndex, runtimeInfo } from '../runtime';
import { History, InitWeightsEvent, Trainer, TRAINER_DEFAULTS } from '../trainer';
import { decimal, device, folder, integer, UsageError } from './options';
import { addDistributedOptions, distributedTrainerOption, launchIfRequested } from './distributed';
import { ownsRunFolder, type DistributedOptions } from '../distributed/settings';
import { defaultRunDir } from '../trainer';
import { COMMAND_FILE, CommandRecord, lockRunFolder, readSavedRun, SavedRun } from './run-folder';
import { addConfigOption, applyConfigFile } from './config-file';
import { writeTrainConfig } from './run-config';
import { LIMITS, maxThreads } from '../limits';
import { fixed } from '../report/format';
import {
  describeModel, describeQuick, describeSetup, QUICK, resolveTrainSettings, savedSettings, toTrainerOptions, TrainSettings,
} from './train-settings';

// The settings moved to train-settings.ts; their importers keep importing them from here.
export { describeModel, describeQuick, describeSetup, QUICK, resolveTrainSettings, savedSettings, toTrainerOptions };
export type { TrainSettings };


/**
 * The options of `train`. `compare` takes them too, less --model (it trains each model), with its
 * own --quick preset and run folder.
 */
export function addTrainOptions(
  cmd: Command, o: { model?: boolean; quick?: Readonly<Partial<TrainSettings>>; out?: string; resume?: string } = {},
): Command {
  const choice = (flags: string, description: string, choices: readonly string[], fallback: string) =>
    cmd.addOption(new Option(flags, description).choices(choices).default(fallback));
  addConfigOption(cmd);
  if (o.model ?? true) choice('--model <name>', 'model', MODEL_NAMES, 'xception');
  choice('--dataset <name>', 'dataset: folder is your images in --data-dir, one sub-folder per class', ['cifar10', 'synthetic', 'folder'], TRAINER_DEFAULTS.dataset);
  cmd.option('--data-dir <dir>', 'CIFAR-10: folder holding cifar-10-batches-bin/, or that folder (default: the cache, ~/.cache/xception-torch); folder: the image folder (train/ and val/, or class folders)');
  cmd.option('--epochs <n>', 'epochs', integer(1), TRAINER_DEFAULTS.epochs);
  cmd.option('-b, --batch-size <n>', 'batch size (at least 2: BatchNorm needs two images per training batch)', integer(LIMITS.minTrainBatch), TRAINER_DEFAULTS.batchSize);
  cmd.addOption(new Option('--lr <x>', 'learning rate').argParser(decimal({ min: 0, minExclusive: true })).default(TRAINER_DEFAULTS.optimizer.lr, TRAINER_DEFAULTS.optimizer.lr.toExponential()));
  choice('--optimizer <name>', 'optimizer', ['adam', 'adamw'], TRAINER_DEFAULTS.optimizer.type);
  cmd.option('--weight-decay <x>', 'weight decay (L2 for adam, decoupled for adamw)', decimal({ min: 0 }), TRAINER_DEFAULTS.optimizer.weightDecay);
  choice('--schedule <name>', 'learning-rate schedule', ['constant', 'cosine'], TRAINER_DEFAULTS.schedule);
  cmd.option('--label-smoothing <x>', 'label smoothing of the cross-entropy loss', decimal({ min: 0, max: 1, maxExclusive: true }), TRAINER_DEFAULTS.labelSmoothing);
  choice('--amp <mode>', 'mixed precision: auto is fp16 on CUDA, off on the CPU', ['auto', 'fp16', 'bf16', 'off'], TRAINER_DEFAULTS.amp);
  cmd.addOption(new Option('--device <device>', 'auto, cpu, cuda or cuda:N (auto: CUDA when available)').argParser(device).default(TRAINER_DEFAULTS.device));
  cmd.option('--image-size <n>', 'crop size: random crop in training, center crop in evaluation', integer(1, LIMITS.imageSize), REFERENCE_PREPROCESSING.crop);
  cmd.addOption(new Option('--resize <n>', 'training resize before the crop; evaluation resizes to --image-size')
    .argParser(integer(1, LIMITS.imageSize)).default(REFERENCE_PREPROCESSING.resize, `${REFERENCE_PREPROCESSING.resize}, or floor(${REFERENCE_PREPROCESSING.resize} * image size / ${REFERENCE_PREPROCESSING.crop}) with --image-size`));
  cmd.option('--crop-pct <x>', 'image folders: evaluation resizes the shorter side to image size / crop-pct, then centre-crops', decimal({ min: 0, max: 1, minExclusive: true }), IMAGE_FOLDER_DEFAULTS.cropPct);
  choice('--interpolation <name>', 'image folders: the resize filter', ['bilinear', 'bicubic'], IMAGE_FOLDER_DEFAULTS.interpolation);
  choice('--preset <name>', "a published weight set's preprocessing, for fine-tuning from it (mean/std, filter, crop_pct; Inception V3: transform_input)", PRESET_NAMES, undefined as never);
  cmd.option('--cache-images', 'image folders: keep the images in memory after their first decode, resized to the evaluation resize (refused when they would not fit)');
  cmd.option('--skip-bad-images', 'image folders: leave out files that cannot be decoded (with a warning and their count) instead of stopping');
  choice('--activation <name>', 'Xception: activation between depthwise and pointwise', ['none', 'relu', 'elu'], 'none');
  choice('--variant <name>', "Xception: 'paper' or the reference 'notebook' variant", ['paper', 'notebook'], 'paper');
  cmd.addOption(new Option('--num-classes <n>', 'classifier outputs').argParser(integer(1, LIMITS.numClasses))
    .default(TRAINER_DEFAULTS.numClasses, `${TRAINER_DEFAULTS.numClasses}; an image folder's class count`));
  cmd.option('--no-aux-logits', 'Inception V3: without the auxiliary classifier (needed below --image-size 299)');
  cmd.option('--aux-weight <x>', 'Inception V3: weight of the auxiliary loss', decimal({ min: 0 }), TRAINER_DEFAULTS.auxLossWeight);
  cmd.addOption(new Option('--val-size <n>', 'validation images (CIFAR-10, and image folders without val/: held out of the training set)')
    .argParser(integer(1, LIMITS.syntheticImages)).default(TRAINER_DEFAULTS.valSize, `${TRAINER_DEFAULTS.valSize}; a tenth of an image folder`));
  cmd.option('--train-limit <n>', 'use only the first N training images (default: all)', integer(LIMITS.minTrainBatch));
  cmd.option('--eval-limit <n>', 'use only the first N validation and test images (default: all)', integer(1));
  cmd.option('--seed <n>', 'seed of the weights, the split, shuffles, augmentation and dropout', integer(0), TRAINER_DEFAULTS.seed);
  cmd.option('--threads <n>', 'CPU threads (default: all cores)', integer(1, maxThreads()));
  cmd.option('--init-weights <file>', 'start from these weights (.safetensors, or a PyTorch .pth/.pt/.bin state dict); a classifier of another shape starts fresh', folder);
  cmd.option('--freeze-backbone', 'train only the classifier (linear probing; usually with --init-weights): the backbone and its BatchNorm statistics stay as they are');
  cmd.option('--no-fused-adam', 'CUDA: run Adam per tensor instead of the fused kernels (a fallback; no effect on the CPU)');
  cmd.option('--out <dir>', o.out ?? 'run folder (default: runs/<model>-<timestamp>)', folder);
  cmd.option('--resume', o.resume ?? 'continue the run in --out from its checkpoints/last, with its options unless given here');
  cmd.option('--quick', describeQuick(o.quick ?? QUICK));
  addDistributedOptions(cmd);
  return cmd;
}

/** Fails (exit 1) when the settings ask for a CUDA device this machine does not have. */
export function checkDevice(d: Device): void {
  if (!d.startsWith('cuda')) return;
  const info = runtimeInfo();
  if (!info.cudaAvailable) {
    throw new Error(`--device ${d}: CUDA is not available to libtorch ${info.libtorchVersion} (see xception-torch doctor); use --device cpu`);
  }
  const index = cudaIndex(d);
  if (index >= info.cudaDeviceCount) throw new Error(`--device ${d}: there ${info.cudaDeviceCount === 1 ? 'is 1 CUDA device' : `are ${info.cudaDeviceCount} CUDA devices`}`);
}

async function writeCommandRecord(outDir: string, argv: string[], s: TrainSettings, previous?: CommandRecord & { resumes?: string[][] }): Promise<void> {
  const version = packageVersion();
  const record = previous
    ? { ...previous, resumes: [...(previous.resumes ?? []), argv], dataDir: s.dataDir, synthetic: s.synthetic, preset: s.preset }
    : { version, argv, dataDir: s.dataDir, synthetic: s.synthetic, preset: s.preset };
  await fs.promises.mkdir(outDir, { recursive: true });
  await writeFileAtomic(path.join(outDir, COMMAND_FILE), JSON.stringify(record, null, 2) + '\n');
  // config.yaml: the options, which `train -c` reruns (rewritten at each resume).
  await writeTrainConfig(outDir, s, QUICK);
}

/** Runs `train`; resolves with the exit code (0, or 130 after Ctrl-C). */
export async function runTrain(parsed: Record<string, unknown>, cmd: Command, argv: string[]): Promise<number> {
  // -c FILE: its options under the command line's.
  const opts = cmd.getOptionValue('config') === undefined ? parsed : applyConfigFile(cmd);
  // --nproc-per-node: this process only starts the workers, each of which runs this command.
  const launched = await launchIfRequested(opts, cmd, { argv, defaultOut: defaultRunDir(opts.model as string), quickPreset: QUICK });
  if (launched !== undefined) return launched;
  // The run folder is locked before anything in it is read or written.
  if (opts.out === undefined) return trainCommand(opts, cmd, argv);
  return lockRunFolder(path.resolve(opts.out as string), () => trainCommand(opts, cmd, argv));
}

async function trainCommand(opts: Record<string, unknown>, cmd: Command, argv: string[]): Promise<number> {
  const source = (key: string) => cmd.getOptionValueSource(key);
  let saved: SavedRun | undefined;
  if (opts.resume) {
    if (opts.out === undefined) throw new UsageError('--resume needs --out DIR: the run folder to continue');
    const checkpoints = path.join(path.resolve(opts.out as string), 'checkpoints');
    const last = findCheckpoint(checkpoints, 'last');
    if (!last) throw new Error(`nothing to resume: no checkpoint in ${checkpoints}`);
    saved = await readSavedRun(last);
  } else if (opts.out !== undefined && findCheckpoint(path.join(path.resolve(opts.out as string), 'checkpoints'), 'last')) {
    throw new UsageError(`${opts.out as string} already holds a run; continue it with --resume, or choose another --out`);
  }
  const settings = resolveTrainSettings(opts, source, saved && savedSettings(saved));
  // A run killed after its last checkpoint but before metrics.json resumes to write it.
  const finished = saved && (saved.epoch > settings.epochs || (saved.epoch === settings.epochs && fs.existsSync(path.join(saved.runDir, 'metrics.json'))));
  if (saved && finished) {
    throw new UsageError(`the run in ${saved.runDir} has trained its ${saved.epoch} epochs; to train on, give --epochs with more than ${saved.epoch}`);
  }
  checkDevice(settings.device);

  const { outDir, history } = await trainRun(settings, {
    argv, saved, resumeCommand: (dir) => `xception-torch train --resume --out ${dir}`, distributed: distributedTrainerOption(opts),
  });
  // Rank 0 reports for the group (and writes metrics.json, which the others need not wait for).
  if (!ownsRunFolder()) return history.interrupted ? 130 : 0;
  if (history.interrupted) {
    const last = findCheckpoint(path.join(outDir, 'checkpoints'), 'last');
    if (last) {
      console.log(`interrupted: checkpoint in ${last}`);
      console.log(`resume with: xception-torch train --resume --out ${outDir}`);
    } else {
      console.log('interrupted before the first checkpoint; nothing to resume');
    }
    return 130;
  }
  const metrics = readRunMetrics(outDir);
  const best = metrics.bestEpoch !== undefined ? `  (best val acc ${fixed(metrics.bestValAccuracy!, 4)} at epoch ${metrics.bestEpoch})` : '';
  console.log(`test accuracy ${fixed(metrics.testAccuracy, 4)}  test loss ${fixed(metrics.testLoss, 4)}  training ${formatDuration(metrics.trainingSeconds)}${best}`);
  console.log(`run folder: ${outDir}`);
  return 0;
}

export interface TrainRunOptions {
  /** The command line, recorded in the run folder's command.json. */
  argv: string[];
  /** The run being resumed (its checkpoints/last). */
  saved?: SavedRun;
  /** The command that continues the run in `outDir`, shown when Ctrl-C quits at once. */
  resumeCommand: (outDir: string) => string;
  /** This process's group when it is a data-parallel worker (distributedTrainerOption). */
  distributed?: 'env' | DistributedOptions;
}

/**
 * Trains one run with the settings as `train` does: progress on the terminal, command.json, and
 * Ctrl-C that finishes the batch and writes a checkpoint (a second Ctrl-C quits with 130). The
 * history says whether it was interrupted; metrics.json is in `outDir` when it was not.
 */
export async function trainRun(settings: TrainSettings, o: TrainRunOptions): Promise<{ outDir: string; history: History }> {
  let trainer: Trainer;
  try {
    trainer = new Trainer({ ...toTrainerOptions(settings), distributed: o.distributed });
  } catch (error) {
    throw error instanceof RangeError || error instanceof TypeError ? new UsageError(error.message) : error;
  }
  trainer.on('initWeights', (e: InitWeightsEvent) => {
    if (!trainer.ownsRunFolder) return;
    const reset = e.reset.length ? `; left fresh (a classifier of another shape): ${e.reset.join(', ')}` : '';
    console.log(`initial weights from ${e.file}: ${e.loaded.length} tensors loaded${reset}`);
  });
  // What the model accepts (its smallest crop, Inception's aux head) is a usage error, found before
  // anything is printed or locked; so are weights (--init-weights) that do not fit it.
  await trainer.buildModel().catch((error: unknown) => {
    trainer.dispose();
    throw error instanceof RangeError || error instanceof TypeError ? new UsageError(error.message) : error;
  });
  return lockRunFolder(trainer.outDir, () => trainInFolder(trainer, settings, o));
}

async function trainInFolder(trainer: Trainer, settings: TrainSettings, o: TrainRunOptions): Promise<{ outDir: string; history: History }> {
  const outDir = trainer.outDir;
  const tty = Boolean(process.stdout.isTTY);
  const progress = new TrainingProgress(tty, settings.epochs);
  const controller = new AbortController();
  let interrupts = 0;
  let started = false;
  const onSigint = () => {
    interrupts += 1;
    progress.stop();
    if (interrupts > 1 || !started) {
      // Quitting mid-write is safe: checkpoints are only ever swapped in whole.
      const last = findCheckpoint(path.join(outDir, 'checkpoints'), 'last');
      const next = last ? `; continue from the last checkpoint with: ${o.resumeCommand(outDir)}` : '';
      console.error(`\nxception-torch: interrupted${started ? '' : ' before training started'}${next}`);
      process.exit(130);
    }
    console.error('\nxception-torch: stopping after this batch to write a checkpoint (Ctrl-C again to quit at once)');
    controller.abort();
  };
  // SIGTERM (a job scheduler's preemption, torchrun stopping its workers, our launcher stopping the
  // others when one failed) asks for the same stop as a first Ctrl-C, and never quits mid-batch itself.
  const onSigterm = () => {
    if (!started) {
      console.error('\nxception-torch: terminated before training started');
      process.exit(143);
    }
    if (controller.signal.aborted) return;
    progress.stop();
    console.error('\nxception-torch: SIGTERM: stopping after this batch to write a checkpoint');
    controller.abort();
  };

  let history: History;
  let skipped = 0;
  try {
    const start = !o.saved ? 'training ' : o.saved.epoch < settings.epochs ? `resuming at epoch ${o.saved.epoch + 1}/${settings.epochs}: `
      : `finishing (all ${o.saved.epoch} epochs trained, the test metrics not yet written): `;
    // Data-parallel ranks other than 0 train in step with it, silent unless they fail.
    const owner = trainer.ownsRunFolder;
    const group = trainer.worldSize > 1 ? `, data-parallel over ${trainer.worldSize} processes` : '';
    if (owner) console.log(`${start}${describeModel(settings)} on ${describeSetup(settings, trainer.resolvedOptions())}${group}`);
    if (owner) console.log(`run folder: ${outDir}`);
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigterm);
    // Load the data first, so that a missing dataset leaves no command.json.
    await trainer.getModel();
    if (owner) await writeCommandRecord(outDir, o.argv, settings, o.saved?.command);
    // From here fit() reaches its loop at once and honours the signal; before, Ctrl-C just quits.
    started = true;
    if (owner) {
      trainer.on('batch', (e) => progress.batch(e));
      trainer.on('epoch', (r) => progress.epoch(r));
    }
    // --skip-bad-images: each undecodable file once, on every rank (each decodes its own share).
    trainer.on('badImage', (e: Error) => {
      skipped++;
      console.error(`\nxception-torch: warning: left out: ${e.message}`);
    });
    history = await trainer.fit({ signal: controller.signal, resume: Boolean(o.saved) });
    if (skipped > 0) console.error(`xception-torch: warning: ${skipped} image file${skipped === 1 ? '' : 's'} could not be decoded and ${skipped === 1 ? 'was' : 'were'} left out`);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigterm);
    progress.stop();
    trainer.dispose();
  }
  return { outDir, history };
}

/** metrics.json of a finished run (written by the Trainer). */
export interface RunMetrics {
  parameters: number;
  testAccuracy: number;
  testLoss: number;
  trainingSeconds: number;
  imagesPerSecond: number;
  epochs: number;
  bestEpoch?: number;
  bestValAccuracy?: number;
}

export function readRunMetrics(outDir: string): RunMetrics {
  return JSON.parse(fs.readFileSync(path.join(outDir, 'metrics.json'), 'utf8')) as RunMetrics;
}
