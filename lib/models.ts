// The models: typed wrappers over the native Xception and Inception V3 (native/xception.cpp,
// native/inception_v3.cpp). Weights move in and out as safetensors with PyTorch's names
// (lib/native-model.ts holds what both share; lib/model-options.ts their options).
import { ModelError } from './errors';
import {
  InceptionV3Options, ModelOptionsByName, resolveInceptionV3Options, resolveXceptionOptions, XceptionOptions,
} from './model-options';
import type { ModelName } from './model-types';
import { NativeBackedModel } from './native-model';

export type { BatchNormFolding, Device, LayerSummary, Model, ModelName, ModelSummary, TensorData } from './model-types';
export type { InceptionV3Options, ModelOptionsByName, XceptionOptions } from './model-options';
export type { TrainingJobLease } from './native-model';
export { ModelError };

export class Xception extends NativeBackedModel {
  readonly name = 'xception' as const;
  protected readonly displayName = 'Xception';
  readonly options: Readonly<Required<XceptionOptions>>;

  constructor(options: XceptionOptions = {}) {
    const resolved = resolveXceptionOptions(options);
    super('xception', resolved);
    this.options = Object.freeze(resolved);
  }
}

export class InceptionV3 extends NativeBackedModel {
  readonly name = 'inception_v3' as const;
  protected readonly displayName = 'InceptionV3';
  readonly options: Readonly<Required<InceptionV3Options>>;

  constructor(options: InceptionV3Options = {}) {
    const resolved = resolveInceptionV3Options(options);
    super('inception_v3', resolved);
    this.options = Object.freeze(resolved);
  }

  /**
   * 299 with the auxiliary classifier: torchvision's aux head pools Mixed_6e's 17x17 map with a 5x5
   * window of stride 3 and then needs 5x5, which smaller crops do not leave.
   */
  override minTrainingInputSize(): number {
    return this.options.auxLogits ? 299 : this.minInputSize();
  }

  protected override trainingCropProblem(min: number, crop: number): string {
    if (!this.options.auxLogits) return super.trainingCropProblem(min, crop);
    return `Inception V3's auxiliary classifier needs training crops of at least ${min}x${min} (got ${crop}x${crop}): ` +
      'build the model with auxLogits: false (CLI: --no-aux-logits), or train at 299';
  }
}

export const MODEL_NAMES: readonly ModelName[] = ['xception', 'inception_v3'];

export function createModel<N extends ModelName>(name: N, options?: ModelOptionsByName[N]): Xception | InceptionV3 {
  switch (name) {
    case 'xception':
      return new Xception(options as XceptionOptions);
    case 'inception_v3':
      return new InceptionV3(options as InceptionV3Options);
    default:
      throw new ModelError(`unknown model '${String(name)}' (expected ${MODEL_NAMES.map((m) => `'${m}'`).join(' or ')})`);
  }
}
