// What a run folder's config.yaml holds: the resolved options of the run, as the keys of
// `-c FILE` (lib/commands/config-file.ts), so that `xception-torch train -c runs/x/config.yaml
// --out runs/y` trains the same run again (on the CPU, the same numbers).
//
// It holds the options that decide what is trained and how: model, data, preprocessing,
// optimization, precision, device and seed, each written out (defaults too, so that a later version
// with other defaults still reruns the same run). It leaves out what says where or how fast a run
// goes rather than what it computes, and what would be wrong to repeat:
// - --out: a rerun needs a folder of its own (into this one it would be refused as a finished run);
// - --resume: a rerun starts afresh; resuming this run is `--resume --out DIR`, not a new run;
// - --threads: the machine's cores (and under --nproc-per-node the launcher sets it per worker);
// - --nproc-per-node, --master-addr/--master-port, --dist-backend, --dist-timeout: how the run was
//   launched (torchrun launches have none of them); give them again to rerun data-parallel;
// - --quick, except to bring back its synthetic dataset sizes, which have no option of their own.
// 'auto' device and precision stay 'auto', so that the file reruns on another machine; history.json
// records what they resolved to. Each (re)start of the run, --resume included, rewrites the file.
import * as path from 'path';
import type { ComparisonKind, ComparisonMode } from '../compare';
import type { SyntheticDatasetOptions } from '../datasets';
import { packageVersion } from '../paths';
import { CONFIG_FILE, ConfigEntry, kebabCase, writeConfigFile } from './config-file';
import type { TrainSettings } from './train';

/** The settings written in this order, each under its option's kebab-case name. */
const WRITTEN: ReadonlyArray<keyof TrainSettings> = [
  'model', 'dataset', 'dataDir', 'epochs', 'batchSize', 'lr', 'optimizer', 'weightDecay', 'schedule', 'labelSmoothing', 'amp',
  'device', 'imageSize', 'resize', 'activation', 'variant', 'numClasses', 'auxLogits', 'auxWeight', 'valSize', 'trainLimit',
  'evalLimit', 'seed', 'fusedAdam', 'initWeights', 'freezeBackbone', 'cropPct', 'interpolation', 'skipBadImages', 'cacheImages', 'preset',
];

/** The options that only image folders use. */
const FOLDER_ONLY: ReadonlyArray<keyof TrainSettings> = ['cropPct', 'interpolation', 'skipBadImages', 'cacheImages'];

const describeSynthetic = (s: SyntheticDatasetOptions): string =>
  `synthetic dataset: ${s.trainSize ?? 'default'}/${s.valSize ?? 'default'}/${s.testSize ?? 'default'} images, ${s.difficulty ?? 'standard'}`;

/** The synthetic dataset's options other than its validation size (which --val-size sets). */
const sizesOf = (o: SyntheticDatasetOptions | undefined): Partial<SyntheticDatasetOptions> =>
  Object.fromEntries(Object.entries(o ?? {}).filter(([key, value]) => key !== 'valSize' && value !== undefined));

/** Equal as JSON, keys in any order (the synthetic sizes). */
const sameOptions = (a: object, b: object): boolean => {
  const canonical = (o: object) => JSON.stringify(Object.entries(o).filter(([, v]) => v !== undefined).sort(([x], [y]) => x.localeCompare(y)));
  return canonical(a) === canonical(b);
};

/**
 * The entries of a train run's config.yaml. `quick` is the --quick preset of the command that
 * reruns it (train's): a synthetic run with its dataset sizes is written as `quick: true`.
 */
export function trainConfigEntries(s: TrainSettings, quick: Readonly<Partial<TrainSettings>>, skip: ReadonlyArray<keyof TrainSettings> = []): ConfigEntry[] {
  const entries: ConfigEntry[] = [];
  const sizes = sizesOf(s.synthetic);
  let omitValSize = false;
  if (s.dataset === 'synthetic') {
    if (Object.keys(sizes).length && sameOptions(sizes, sizesOf(quick.synthetic))) {
      entries.push({ key: 'quick', value: true, comment: `only for its ${describeSynthetic(s.synthetic!)}; the options below set the rest` });
    } else if (Object.keys(sizes).length) {
      // Only a run made by the library (then resumed here) has other sizes.
      entries.push({ key: 'quick', value: false, comment: `no option sets this run's ${describeSynthetic(s.synthetic!)}: a rerun uses the defaults` });
    }
    // On the synthetic set --val-size sets the validation images (resolveTrainSettings). A run
    // whose synthetic set did not get its size from --val-size (--quick's 128, or the set's default)
    // is written without it, so that the rerun takes the same.
    omitValSize = s.synthetic?.valSize !== s.valSize;
  }
  for (const key of WRITTEN) {
    let value = s[key] as string | number | boolean | undefined;
    if (value === undefined || (key === 'valSize' && omitValSize) || (key === 'dataDir' && s.dataset === 'synthetic') || (FOLDER_ONLY.includes(key) && s.dataset !== 'folder') || skip.includes(key)) continue;
    // Paths relative to where the run started would not hold from elsewhere.
    if (key === 'dataDir' || key === 'initWeights') value = path.resolve(String(value));
    entries.push({ key: kebabCase(key), value });
  }
  return entries;
}

/** The comment lines at the top of a config.yaml: what it is, and how to rerun it. */
function header(command: 'train' | 'compare', dir: string, what: string): string[] {
  return [
    `xception-torch ${packageVersion()}: the options of the ${what} in ${dir}.`,
    'Rerun it into a new folder (options given on the command line win over this file):',
    `  xception-torch ${command} -c ${path.join(dir, CONFIG_FILE)} --out NEW_FOLDER`,
    'Not here: --out, --resume, --threads and the data-parallel launch options (give them again as needed).',
  ];
}

/** Writes a train run's config.yaml into its folder. */
export function writeTrainConfig(outDir: string, s: TrainSettings, quick: Readonly<Partial<TrainSettings>>): Promise<string> {
  return writeConfigFile(outDir, header('train', outDir, 'run'), trainConfigEntries(s, quick));
}

export interface CompareConfig {
  kind: ComparisonKind;
  mode: ComparisonMode;
  /** The settings the runs share (those of the first run). */
  shared: TrainSettings;
  /** Xception's activation in each run of an 'activations' comparison. */
  activations: ReadonlyArray<TrainSettings['activation']>;
  steps?: number;
  warmup?: number;
}

/** Writes a comparison folder's config.yaml: the shared train options less --model, and the mode. */
export function writeCompareConfig(dir: string, c: CompareConfig, quick: Readonly<Partial<TrainSettings>>): Promise<string> {
  const byActivation = c.kind === 'activations';
  const entries = trainConfigEntries(c.shared, quick, byActivation ? ['model', 'activation'] : ['model']);
  if (byActivation) entries.push({ key: 'activations', value: c.activations.join(',') });
  if (c.mode === 'params-only') entries.push({ key: 'params-only', value: true });
  if (c.mode === 'throughput') {
    entries.push({ key: 'throughput', value: true });
    if (c.steps !== undefined) entries.push({ key: 'steps', value: c.steps });
    if (c.warmup !== undefined) entries.push({ key: 'warmup', value: c.warmup });
  }
  return writeConfigFile(dir, header('compare', dir, 'comparison'), entries);
}
