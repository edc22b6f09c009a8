// A split's evaluation: what the native session tallies (loss, accuracy, the confusion counts)
// read back as the figures reports show, per-class accuracy included.
import type { NativeEvalResult } from './native';

export interface EvalResult {
  split: 'val' | 'test';
  loss: number;
  accuracy: number;
  images: number;
  classNames: string[];
  perClassAccuracy: number[];
  /** confusion[true][predicted] */
  confusion: number[][];
}

/**
 * The EvalResult of one native evaluation over `classes` model outputs; per-class accuracy covers
 * the dataset's `classNames` (a model may have more outputs than the data has classes).
 */
export function toEvalResult(split: 'val' | 'test', r: NativeEvalResult, classNames: string[], classes: number): EvalResult {
  const confusion = Array.from({ length: classes }, (_, i) => Array.from(r.confusion.subarray(i * classes, (i + 1) * classes)));
  const perClassAccuracy = confusion.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total ? row[i] / total : 0;
  });
  return { split, loss: r.loss, accuracy: r.accuracy, images: r.images, classNames, perClassAccuracy: perClassAccuracy.slice(0, classNames.length), confusion };
}
