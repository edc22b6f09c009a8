// The evaluation preprocessing each published weight set was trained with, by name: what
// `predict --preset` (and fine-tuning) pick so the weights see images as they did in training.
// Sources: torchvision's Inception_V3_Weights.IMAGENET1K_V1 (ImageClassification(crop_size=299,
// resize_size=342), bilinear, ImageNet mean/std; the model is built with transform_input=True) and
// timm's legacy_xception.tf_in1k pretrained cfg (input 299, crop_pct 0.8975 so resize 333, bicubic,
// mean = std = 0.5).
import type { InceptionV3Options, ModelName, XceptionOptions } from '../models';
import type { EvalTransform } from './eval-transform';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;
export const INCEPTION_MEAN = [0.5, 0.5, 0.5] as const;
export const INCEPTION_STD = [0.5, 0.5, 0.5] as const;

export interface Preset {
  /** What the preset is for, in a few words. */
  description: string;
  /** The model the weights are for. */
  model: ModelName;
  /** Model options the weights need (torchvision's Inception V3 weights expect transform_input). */
  modelOptions: XceptionOptions | InceptionV3Options;
  transform: Readonly<EvalTransform>;
}

export const PRESETS = Object.freeze({
  'torchvision-inception_v3': {
    description: "torchvision's inception_v3 IMAGENET1K_V1 weights",
    model: 'inception_v3',
    modelOptions: { transformInput: true },
    transform: { size: 299, resize: 342, cropPct: 299 / 342, interpolation: 'bilinear', mean: IMAGENET_MEAN, std: IMAGENET_STD },
  },
  'timm-legacy_xception': {
    description: "timm's legacy_xception.tf_in1k weights (formerly 'xception')",
    model: 'xception',
    modelOptions: {},
    transform: { size: 299, resize: 333, cropPct: 0.8975, interpolation: 'bicubic', mean: INCEPTION_MEAN, std: INCEPTION_STD },
  },
} satisfies Record<string, Preset>) as Readonly<Record<PresetName, Preset>>;

export type PresetName = 'torchvision-inception_v3' | 'timm-legacy_xception';

export const PRESET_NAMES = Object.keys(PRESETS) as PresetName[];

/** The preset for published weights of `model` when none is named. */
export const DEFAULT_PRESET: Readonly<Record<ModelName, PresetName>> = Object.freeze({
  inception_v3: 'torchvision-inception_v3',
  xception: 'timm-legacy_xception',
});
