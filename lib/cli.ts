#!/usr/bin/env node
// The `xception-torch` command. It parses options, calls the library, and prints; errors in the
// user's input exit with code 2, other failures with 1, each as one line without a stack trace.
import { Command, CommanderError, Option } from 'commander';
import { addCompareOptions, runCompare } from './commands/compare';
import { DOCTOR_HELP, runDoctor } from './commands/doctor';
import { addEvaluateOptions, runEvaluate } from './commands/evaluate';
import { integer, UsageError } from './commands/options';
import { addPredictOptions, runPredict } from './commands/predict';
import { addTrainOptions, runTrain } from './commands/train';
import { ensureCifar10, readCifar10Folder } from './datasets/cifar10';
import { createModel, MODEL_NAMES, ModelError, ModelName } from './models';
import { formatSummaryTable } from './report/summary-table';

import { packageVersion } from './paths';
import { LIMITS, maxThreads } from './limits';
import { DATA_ENVIRONMENT, distributedExamples, helpFooter, TRAIN_ENVIRONMENT } from './commands/help';
import { TRAINER_DEFAULTS } from './trainer-options';

const version = packageVersion();

/** `result.exitCode`: what a command that finished without an error asks to exit with (130 after Ctrl-C). */
function buildProgram(argv: string[], result: { exitCode: number }): Command {
  const program = new Command('xception-torch')
    .description('Train and compare Xception and Inception V3 on libtorch')
    .version(version)
    .showSuggestionAfterError(true)
    .exitOverride();

  addTrainOptions(program
    .command('train')
    .description('train a model; writes history, metrics and checkpoints to the run folder (Ctrl-C: checkpoint and stop)'))
    .addHelpText('after', helpFooter([
      'xception-torch train --quick # a small synthetic CPU run, about a minute',
      'xception-torch train --model inception_v3 --epochs 20 -b 64 # CIFAR-10 (downloaded once)',
      'xception-torch train --data-dir ~/data --image-size 96 --out runs/x96',
      'xception-torch train --resume --out runs/x96 --epochs 30 # continue, then train on',
      'xception-torch train -c runs/x96/config.yaml --out runs/x96-again # rerun a run: its options (flags given here win)',
      'xception-torch train -c run.yaml --seed 1 # options from a YAML or JSON file (batch-size: 64, or batchSize)',
      ...distributedExamples('train'),
    ], TRAIN_ENVIRONMENT))
    .action(async (opts, cmd: Command) => {
      result.exitCode = await runTrain(opts, cmd, argv);
    });

  addEvaluateOptions(program
    .command('evaluate')
    .description("evaluate a checkpoint on the run's test (or validation) split; writes evaluation-<split>.json to the run folder"))
    .addHelpText('after', helpFooter([
      'xception-torch evaluate --checkpoint runs/x96 # its best checkpoint, test split',
      'xception-torch evaluate --checkpoint runs/x96/checkpoints/last --split val --json',
    ], DATA_ENVIRONMENT))
    .action(async (opts) => {
      result.exitCode = await runEvaluate(opts);
    });

  addCompareOptions(program
    .command('compare')
    .description('Xception vs Inception V3 (or Xception per --activations): train and test each with the same options, or --throughput, or --params-only; writes compare.json, compare.md and figures'))
    .addHelpText('after', helpFooter([
      'xception-torch compare --params-only # parameters and MACs, in seconds',
      'xception-torch compare --quick --out runs/cmp # both models on a small synthetic set',
      'xception-torch compare --throughput --image-size 96 -b 8',
      'xception-torch compare --activations none,relu,elu --quick',
      'xception-torch compare -c runs/cmp/config.yaml --out runs/cmp2 # rerun a comparison with its options',
      ...distributedExamples('compare'),
    ], TRAIN_ENVIRONMENT))
    .action(async (opts, cmd: Command) => {
      result.exitCode = await runCompare(opts, cmd, argv);
    });

  addPredictOptions(program
    .command('predict')
    .description('classify image files: the top-k classes and probabilities of each, from a run (--checkpoint) or published weights (--weights)'))
    .addHelpText('after', helpFooter([
      'xception-torch predict --checkpoint runs/x96 photos/ # a run of this package: its classes and preprocessing',
      'xception-torch predict --model inception_v3 --weights inception_v3_google-0cc3c7bd.pth cat.jpg',
      'xception-torch predict --preset timm-legacy_xception --weights xception.safetensors --top-k 3 --json a.jpg b.png',
      'xception-torch predict --checkpoint runs/x96 --skip-bad-images photos/ # warn about undecodable files, go on',
    ]))
    .action(async (images: string[], opts) => {
      result.exitCode = await runPredict(images, opts);
    });

  program
    .command('summary')
    .description('print the layer table and parameter count of a model')
    .addHelpText('after', helpFooter([
      'xception-torch summary # Xception for CIFAR-10: 20,827,442 parameters',
      'xception-torch summary --model inception_v3 --num-classes 1000 --json',
      'xception-torch summary --middle-blocks 4 --image-size 96',
    ]))
    .addOption(new Option('--model <name>', 'model').choices(MODEL_NAMES).default('xception'))
    .option('--num-classes <n>', 'classifier outputs', integer(1, LIMITS.numClasses), TRAINER_DEFAULTS.numClasses)
    .option('--image-size <n>', 'input height and width', integer(1, LIMITS.imageSize), 299)
    .addOption(new Option('--activation <name>', 'Xception: activation between depthwise and pointwise').choices(['none', 'relu', 'elu']).default('none'))
    .addOption(new Option('--variant <name>', "Xception: 'paper' or the reference 'notebook' variant").choices(['paper', 'notebook']).default('paper'))
    .option('--middle-blocks <n>', 'Xception: middle-flow blocks', integer(0, LIMITS.middleFlowBlocks), 8)
    .option('--no-aux-logits', 'Inception V3: without the auxiliary classifier')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts) => {
      const name = opts.model as ModelName;
      const model = name === 'xception'
        ? createModel('xception', {
          numClasses: opts.numClasses, intermediateActivation: opts.activation, variant: opts.variant,
          middleFlowBlocks: opts.middleBlocks,
        })
        : createModel('inception_v3', { numClasses: opts.numClasses, auxLogits: opts.auxLogits });
      try {
        const min = model.minInputSize();
        if (opts.imageSize < min) throw new UsageError(`--image-size must be at least ${min} for ${name}`);
        const { layers, parameters, macs } = await model.summary(opts.imageSize);
        if (opts.json) {
          console.log(JSON.stringify({ model: name, imageSize: opts.imageSize, parameters, macs, layers }, null, 2));
        } else {
          const title = `${name} (${opts.numClasses} classes${name === 'xception' ? `, ${opts.variant}, activation ${opts.activation}` : `, aux logits ${opts.auxLogits ? 'on' : 'off'}`})`;
          console.log(formatSummaryTable(layers, { title, imageSize: opts.imageSize, parameters, macs }));
        }
      } finally {
        model.dispose();
      }
    });

  program
    .command('doctor')
    .description('show the libtorch the addon uses, CUDA/cuDNN, CPU threads and the data-parallel backends; check the build toolchain, libtorch, the cache and CIFAR-10, proxies, runs/ and the Python reference, each OK or a problem with the command that fixes it (exit code 1 when any problem was found)')
    .addHelpText('after', DOCTOR_HELP)
    .option('--threads <n>', 'CPU threads to report/use', integer(1, maxThreads()))
    .option('--json', 'print the runtime and the checks as JSON')
    .action(async (opts) => {
      result.exitCode = await runDoctor(opts);
    });

  program
    .command('download')
    .description('download CIFAR-10 (checked against its MD5) into the cache or --data-dir, unless it is already there')
    .addHelpText('after', helpFooter(['xception-torch download', 'xception-torch download --data-dir ~/data --quiet'], DATA_ENVIRONMENT))
    .option('--data-dir <dir>', 'folder holding cifar-10-batches-bin/, or that folder itself (default: the cache, ~/.cache/xception-torch)')
    .option('--quiet', 'no progress output')
    .action(async (opts) => {
      const folder = await ensureCifar10({ dataDir: opts.dataDir, quiet: opts.quiet });
      const { classNames, train, test } = await readCifar10Folder(folder);
      console.log(`CIFAR-10 in ${folder}`);
      console.log(`train ${train.count} images, test ${test.count} images, ${classNames.length} classes: ${classNames.join(', ')}`);
    });

  return program;
}

export async function main(argv: string[]): Promise<number> {
  const result = { exitCode: 0 };
  const program = buildProgram(argv, result);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return result.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander already printed its one-line usage error.
      return error.exitCode === 0 ? 0 : 2;
    }
    const message = String((error as Error).message).replace(/\s*\n\s*/g, ' ');
    console.error(`xception-torch: error: ${message}`);
    return error instanceof UsageError || error instanceof ModelError ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
