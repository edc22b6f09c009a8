// The reference notebook's published results (shared/docs/REFERENCES.md), shown beside a
// comparison for context: CIFAR-10 at 299x299, 10 epochs, batch 128, Adam 1e-3, fp16 autocast on
// 2 x Tesla T4 (nn.DataParallel), no augmentation (a bug), Inception V3 trained on its main logits.
// They are not measured here; a row of our own is comparable only when its setup is the same.
import type { ModelName } from './models';

export interface ReferenceResult {
  /** How the row is labelled in tables and charts. */
  label: string;
  model: ModelName;
  /** Xception: the activation between depthwise and pointwise convolutions in that run. */
  activation?: 'none' | 'relu' | 'elu';
  parameters?: number;
  /** Test accuracy, 0..1. */
  testAccuracy?: number;
  /** Training time of the 10 epochs. */
  trainingSeconds?: number;
  /** Training images per second (45,000 images x 10 epochs / training time). */
  imagesPerSecond?: number;
}

export const REFERENCE_SETUP = 'reference notebook: CIFAR-10, 299x299, 10 epochs, batch 128, Adam 1e-3, fp16, 2 x Tesla T4';

const TRAINING_IMAGES = 45_000 * 10;

export const REFERENCE_RESULTS: readonly ReferenceResult[] = Object.freeze([
  {
    label: 'reference: xception (notebook variant, ReLU)', model: 'xception', activation: 'relu',
    parameters: 20_825_402, testAccuracy: 0.8487, trainingSeconds: 3116.9, imagesPerSecond: TRAINING_IMAGES / 3116.9,
  },
  {
    label: 'reference: xception (notebook variant, no activation)', model: 'xception', activation: 'none',
    parameters: 20_825_402, trainingSeconds: 3433, imagesPerSecond: TRAINING_IMAGES / 3433,
  },
  {
    label: 'reference: inception_v3', model: 'inception_v3',
    parameters: 24_371_444, testAccuracy: 0.8544, trainingSeconds: 1902.98, imagesPerSecond: TRAINING_IMAGES / 1902.98,
  },
]);
