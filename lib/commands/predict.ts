// `xception-torch predict`: the top-k classes of image files, from published weights (--model,
// --weights, with the preprocessing those weights were trained with: --preset) or from a run this
// package trained (--checkpoint, with the run's own evaluation preprocessing and class names).
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { modelFile } from '../checkpoint';
import { IMAGENET_CLASSES } from '../data/imagenet-classes';
import { SYNTHETIC_CLASS_NAMES } from '../datasets';
import { ImageDecodeError } from '../errors';
import { EvalTransform, Interpolation, resizeSize, transformProblem } from '../images/eval-transform';
import { findImages } from '../images/find-images';
import { DEFAULT_PRESET, PRESET_NAMES, PRESETS, PresetName } from '../images/presets';
import { LIMITS } from '../limits';
import { createModel, Device, InceptionV3Options, MODEL_NAMES, ModelName, XceptionOptions } from '../models';
import { ImagePrediction, predictImages } from '../predict';
import { readWeightsFile } from '../weights/load-weights';
import { decimal, device, folder, integer, UsageError } from './options';
import { locateCheckpoint, readSavedRun, SavedRun } from './run-folder';
import { checkDevice } from './train';

/** CIFAR-10's classes (its batches.meta.txt), for runs that trained on it. */
const CIFAR10_CLASS_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

function triple(value: string): [number, number, number] {
  const parts = value.split(',').map((s) => s.trim());
  const numbers = parts.map(Number);
  if (parts.length !== 3 || parts.some((p) => p === '') || !numbers.every(Number.isFinite)) {
    throw new InvalidArgumentError('expected three numbers separated by commas, e.g. 0.5,0.5,0.5');
  }
  return numbers as [number, number, number];
}

export function addPredictOptions(cmd: Command): Command {
  cmd.argument('<images...>', 'image files (JPEG, PNG) or folders of them (walked recursively)');
  cmd.option('--checkpoint <path>', 'a run folder trained by this package, or one of its checkpoint folders: its model, weights, preprocessing and class names', folder);
  cmd.addOption(new Option('--model <name>', 'the model the --weights are for (default: the --preset\'s)').choices(MODEL_NAMES));
  cmd.option('--weights <file>', 'weights: .safetensors or a PyTorch state dict (.pth, .pt, .bin); the number of classes is read from fc.weight');
  cmd.addOption(new Option('--preset <name>', "the weights' preprocessing (default with --weights: torchvision-inception_v3 or timm-legacy_xception by --model)").choices(PRESET_NAMES));
  cmd.option('--labels <source>', "class names: 'imagenet' (the 1000 ImageNet classes, the default for 1000-class --weights), or a file: a JSON array or one name a line");
  cmd.option('--top-k <n>', 'classes listed per image', integer(1), 5);
  cmd.option('--batch-size <n>', 'images per forward pass', integer(1, 4096), 8);
  cmd.option('--image-size <n>', 'override: the centre crop (the model\'s input size)', integer(1, LIMITS.imageSize));
  cmd.option('--resize <n>', 'override: the shorter side before the crop (default floor(size / crop-pct))', integer(1, LIMITS.imageSize));
  cmd.option('--crop-pct <x>', 'override: crop size / resize (timm\'s crop_pct)', decimal({ min: 0, max: 1, minExclusive: true }));
  cmd.addOption(new Option('--interpolation <name>', 'override: the resize filter (PIL\'s)').choices(['bilinear', 'bicubic']));
  cmd.option('--mean <r,g,b>', 'override: normalisation mean', triple);
  cmd.option('--std <r,g,b>', 'override: normalisation standard deviation', triple);
  cmd.option('--no-transform-input', "Inception V3 --weights: without torchvision's transform_input (weights trained on input normalised as the preset says, not re-normalised inside the model)");
  cmd.addOption(new Option('--device <device>', 'auto, cpu, cuda or cuda:N').argParser(device).default('auto'));
  cmd.option('--skip-bad-images', 'warn about a file that cannot be decoded and go on (default: stop with an error naming it)');
  cmd.option('--json', 'print JSON');
  return cmd;
}

interface Source {
  model: ModelName;
  modelOptions: XceptionOptions | InceptionV3Options;
  /** The weights file to load. */
  weights: string;
  transform: EvalTransform;
  labels?: readonly string[];
  describe: Record<string, unknown>;
}

/** What --weights holds: its class count (fc.weight's rows) and whether it has Inception's aux head. */
async function inspectWeights(file: string): Promise<{ numClasses: number; auxLogits: boolean }> {
  const { tensors } = await readWeightsFile(file);
  const names = [...tensors.keys()];
  const unwrap = names.length > 0 && names.every((n) => n.startsWith('module.'));
  const get = (name: string) => tensors.get(unwrap ? `module.${name}` : name);
  const fc = get('fc.weight');
  if (!fc || fc.shape.length !== 2) throw new UsageError(`--weights ${file} has no classifier weight fc.weight of 2 dimensions`);
  return { numClasses: fc.shape[0], auxLogits: get('AuxLogits.fc.weight') !== undefined };
}

function readLabels(source: string): string[] {
  if (source === 'imagenet') return [...IMAGENET_CLASSES];
  let text: string;
  try {
    text = fs.readFileSync(source, 'utf8');
  } catch (error) {
    throw new UsageError(`--labels ${source}: ${(error as Error).message}`);
  }
  if (text.trimStart().startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new UsageError(`--labels ${source}: not valid JSON (${(error as Error).message})`);
    }
    if (!Array.isArray(parsed) || !parsed.every((s) => typeof s === 'string')) throw new UsageError(`--labels ${source}: expected a JSON array of strings`);
    return parsed;
  }
  return text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s !== '');
}

/** A run's class names: from its evaluation reports, else its dataset's. */
function runClassNames(run: SavedRun): string[] | undefined {
  const meta = run.meta as unknown as { classNames?: unknown };
  if (Array.isArray(meta.classNames)) return meta.classNames.map(String);
  for (const split of ['test', 'val']) {
    const file = path.join(run.runDir, `evaluation-${split}.json`);
    try {
      const names = (JSON.parse(fs.readFileSync(file, 'utf8')) as { classNames?: unknown }).classNames;
      if (Array.isArray(names)) return names.map(String);
    } catch {
      // no report, or not one we can read: the dataset's names below
    }
  }
  const dataset = run.meta.options.dataset;
  if (dataset === 'synthetic') return [...SYNTHETIC_CLASS_NAMES];
  if (dataset === 'cifar10') return CIFAR10_CLASS_NAMES;
  return undefined;
}

function overrides(opts: Record<string, unknown>, base: EvalTransform): EvalTransform {
  const t: EvalTransform = { ...base };
  if (opts.imageSize !== undefined) t.size = opts.imageSize as number;
  if (opts.cropPct !== undefined) {
    t.cropPct = opts.cropPct as number;
    t.resize = undefined;
  }
  if (opts.resize !== undefined) t.resize = opts.resize as number;
  else if (opts.imageSize !== undefined && opts.cropPct === undefined) t.resize = undefined;  // keep the crop_pct, not the old resize
  if (opts.interpolation !== undefined) t.interpolation = opts.interpolation as Interpolation;
  if (opts.mean !== undefined) t.mean = opts.mean as [number, number, number];
  if (opts.std !== undefined) t.std = opts.std as [number, number, number];
  const problem = transformProblem(t);
  if (problem) throw new UsageError(`the preprocessing: ${problem}`);
  return t;
}

async function resolveSource(opts: Record<string, unknown>): Promise<Source> {
  const preset = opts.preset ? PRESETS[opts.preset as PresetName] : undefined;
  if (opts.checkpoint !== undefined) {
    if (opts.weights !== undefined || opts.model !== undefined) throw new UsageError('--checkpoint takes the model and weights from the run: leave out --model and --weights');
    const checkpoint = locateCheckpoint(opts.checkpoint as string);
    const run = await readSavedRun(checkpoint);
    const p = run.meta.options.preprocessing as { crop: number; evalResize: number; mean: [number, number, number]; std: [number, number, number] };
    // An image-folder run evaluated as torchvision does (its crop_pct and filter); the others resized to the crop.
    const folder = run.meta.options.imageFolder as { cropPct: number; resize: number | null; interpolation: Interpolation } | null | undefined;
    const runTransform: EvalTransform = folder
      ? { size: p.crop, cropPct: folder.cropPct, resize: folder.resize ?? undefined, interpolation: folder.interpolation, mean: p.mean, std: p.std }
      : { size: p.crop, resize: p.evalResize, interpolation: 'bilinear', mean: p.mean, std: p.std };
    return {
      model: run.meta.model,
      modelOptions: run.meta.modelOptions,
      weights: modelFile(checkpoint),
      transform: overrides(opts, preset?.transform ?? runTransform),
      labels: opts.labels !== undefined ? readLabels(opts.labels as string) : runClassNames(run),
      describe: { checkpoint },
    };
  }
  if (opts.weights === undefined) throw new UsageError('name the weights: --checkpoint RUN, or --weights FILE (with --model or --preset)');
  const model = (opts.model ?? preset?.model) as ModelName | undefined;
  if (!model) throw new UsageError(`--weights needs --model (${MODEL_NAMES.join(' or ')}) or --preset`);
  if (preset && preset.model !== model) throw new UsageError(`--preset ${String(opts.preset)} is for ${preset.model}, not ${model}`);
  const presetName = (opts.preset as PresetName | undefined) ?? DEFAULT_PRESET[model];
  const chosen = PRESETS[presetName];
  const weights = opts.weights as string;
  if (!fs.existsSync(weights)) throw new UsageError(`--weights ${weights} does not exist`);
  const { numClasses, auxLogits } = await inspectWeights(weights);
  const modelOptions: XceptionOptions | InceptionV3Options = model === 'inception_v3'
    ? { ...chosen.modelOptions, numClasses, auxLogits, initWeights: false, ...(opts.transformInput === false ? { transformInput: false } : {}) }
    : { ...chosen.modelOptions, numClasses };
  const labels = opts.labels !== undefined ? readLabels(opts.labels as string) : numClasses === 1000 ? IMAGENET_CLASSES : undefined;
  return { model, modelOptions, weights, transform: overrides(opts, chosen.transform), labels, describe: { weights, preset: presetName } };
}

function formatPrediction(p: ImagePrediction): string {
  const lines = [p.file];
  for (const c of p.top) lines.push(`  ${c.probability.toFixed(4)}  ${c.label} (${c.index})`);
  return lines.join('\n');
}

export async function runPredict(targets: string[], opts: Record<string, unknown>): Promise<number> {
  const dev = opts.device as Device;
  const source = await resolveSource(opts);
  let files: string[];
  try {
    files = await findImages(targets);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  checkDevice(dev);
  const model = createModel(source.model, source.modelOptions as never);
  const numClasses = model.options.numClasses;
  if (source.labels && source.labels.length !== numClasses) {
    model.dispose();
    throw new UsageError(`${source.labels.length} class names for a model of ${numClasses} classes (--labels)`);
  }
  const skipped: Array<{ file: string; error: string }> = [];
  let predictions: ImagePrediction[];
  try {
    const min = model.minInputSize();
    if (source.transform.size < min) throw new UsageError(`the crop size ${source.transform.size} is below ${source.model}'s smallest input, ${min} (--image-size)`);
    await model.loadWeights(source.weights);
    model.to(dev);
    predictions = await predictImages(model, files, {
      transform: source.transform,
      labels: source.labels,
      topK: opts.topK as number,
      batchSize: opts.batchSize as number,
      onBadImage: opts.skipBadImages
        ? (error: ImageDecodeError) => {
          skipped.push({ file: error.file, error: error.message });
          console.error(`xception-torch: warning: ${error.message}; skipped`);
        }
        : undefined,
      onPredictions: opts.json ? undefined : (batch) => {
        for (const p of batch) console.log(formatPrediction(p));
      },
    });
  } finally {
    model.dispose();
  }
  if (skipped.length) console.error(`xception-torch: warning: skipped ${skipped.length} of ${files.length} images that could not be decoded`);
  if (opts.json) {
    const t = source.transform;
    console.log(JSON.stringify({
      model: source.model,
      ...source.describe,
      numClasses,
      transform: { size: t.size, resize: resizeSize(t), interpolation: t.interpolation ?? 'bilinear', mean: t.mean, std: t.std },
      predictions,
      skipped,
    }, null, 2));
  }
  return predictions.length === 0 ? 1 : 0;
}
