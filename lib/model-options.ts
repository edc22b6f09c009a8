// The options of each model: what they are, what values each accepts (a ModelError naming the
// option otherwise), and the defaults that fill in the rest.
import { ModelError } from './errors';
import { LIMITS } from './limits';

export interface XceptionOptions {
  /** Classifier outputs. Default 1000. */
  numClasses?: number;
  /** What sits between the depthwise and pointwise convolutions; the paper's choice is 'none'. */
  intermediateActivation?: 'none' | 'relu' | 'elu';
  /** Residual blocks in the middle flow. Default 8. */
  middleFlowBlocks?: number;
  /** Dropout before the classifier. Default 0. */
  dropout?: number;
  /** 'paper' (default) or 'notebook': the reference notebook's stem (bias, padding 1) and skips (bias, no BN). */
  variant?: 'paper' | 'notebook';
}

export interface InceptionV3Options {
  /** Classifier outputs. Default 1000. */
  numClasses?: number;
  /** Build the auxiliary classifier (used in training mode). Default true. */
  auxLogits?: boolean;
  /** Re-normalise ImageNet-normalised input to the (x - 0.5) / 0.5 convention. Default false. */
  transformInput?: boolean;
  /** Dropout before the classifier. Default 0.5. */
  dropout?: number;
  /** torchvision's truncated-normal initialisation. Default true. */
  initWeights?: boolean;
}

export interface ModelOptionsByName {
  xception: XceptionOptions;
  inception_v3: InceptionV3Options;
}

type Check = (value: unknown) => string | undefined;  // a problem, or undefined when fine

const integerIn = (min: number, max: number): Check => (v) =>
  (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? undefined : `an integer from ${min} to ${max}`);
const probability: Check = (v) => (typeof v === 'number' && v >= 0 && v < 1 ? undefined : 'a number in [0, 1)');
const boolean: Check = (v) => (typeof v === 'boolean' ? undefined : 'true or false');
const oneOf = (...choices: string[]): Check => (v) =>
  choices.includes(v as string) ? undefined : choices.map((c) => `'${c}'`).join(' or ');

function validateOptions<T extends object>(model: string, options: T, checks: Record<keyof T & string, Check>): T {
  if (typeof options !== 'object' || options === null) throw new ModelError(`${model} options must be an object`);
  for (const [key, value] of Object.entries(options)) {
    const check = (checks as Record<string, Check>)[key];
    if (!check) throw new ModelError(`unknown ${model} option '${key}' (known: ${Object.keys(checks).join(', ')})`);
    if (value === undefined) continue;
    const expected = check(value);
    if (expected) throw new ModelError(`${model} option ${key} must be ${expected}; got ${JSON.stringify(value)}`);
  }
  return options;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Xception's options checked, defaults filled in (a ModelError for an unknown option or a bad value). */
export function resolveXceptionOptions(options: XceptionOptions): Required<XceptionOptions> {
  validateOptions('Xception', options, {
    numClasses: integerIn(1, LIMITS.numClasses),
    intermediateActivation: oneOf('none', 'relu', 'elu'),
    middleFlowBlocks: integerIn(0, LIMITS.middleFlowBlocks),
    dropout: probability,
    variant: oneOf('paper', 'notebook'),
  });
  return {
    numClasses: 1000, intermediateActivation: 'none', middleFlowBlocks: 8, dropout: 0, variant: 'paper',
    ...stripUndefined(options),
  };
}

/** Inception V3's options checked, defaults filled in (a ModelError for an unknown option or a bad value). */
export function resolveInceptionV3Options(options: InceptionV3Options): Required<InceptionV3Options> {
  validateOptions('InceptionV3', options, {
    numClasses: integerIn(1, LIMITS.numClasses),
    auxLogits: boolean,
    transformInput: boolean,
    dropout: probability,
    initWeights: boolean,
  });
  return {
    numClasses: 1000, auxLogits: true, transformInput: false, dropout: 0.5, initWeights: true,
    ...stripUndefined(options),
  };
}
