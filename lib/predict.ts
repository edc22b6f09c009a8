// Classifying image files with a model: decode (off the event loop), the evaluation transform,
// batched eval-mode forward passes, softmax and the top k classes of each image.
import { ImageDecodeError } from './errors';
import { decodeImage, RgbImage } from './images/decode';
import { EvalTransform, evalBatch, transformProblem } from './images/eval-transform';
import type { Model } from './models';

export interface ClassScore {
  /** The class index (the model's output). */
  index: number;
  label: string;
  probability: number;
}

export interface ImagePrediction {
  file: string;
  /** The k most probable classes, most probable first. */
  top: ClassScore[];
}

export interface PredictOptions {
  transform: EvalTransform;
  /** One name per class output; missing names read 'class N'. */
  labels?: readonly string[];
  /** Classes listed per image. Default 5. */
  topK?: number;
  /** Images per forward pass. Default 8. */
  batchSize?: number;
  /**
   * Called for a file that cannot be decoded; the file is left out. Without it, the first such
   * file rejects the whole call with its ImageDecodeError.
   */
  onBadImage?: (error: ImageDecodeError) => void;
  /** Called with each batch's predictions as soon as they are known. */
  onPredictions?: (predictions: ImagePrediction[]) => void;
}

/** Softmax of one row of logits, in float64 (max-subtracted). */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** The indices of the k largest values, largest first (ties: the lower index first, as torch.topk on CPU). */
export function topK(values: ArrayLike<number>, k: number): number[] {
  const order = Array.from({ length: values.length }, (_, i) => i);
  order.sort((a, b) => values[b] - values[a] || a - b);
  return order.slice(0, Math.min(k, values.length));
}

/** The model's top-k classes for each file, in the files' order; the model is put in eval mode. */
export async function predictImages(model: Model, files: readonly string[], opts: PredictOptions): Promise<ImagePrediction[]> {
  const problem = transformProblem(opts.transform);
  if (problem) throw new RangeError(problem);
  const k = opts.topK ?? 5;
  const batchSize = opts.batchSize ?? 8;
  if (!Number.isSafeInteger(k) || k < 1) throw new RangeError(`topK must be a positive integer (got ${k})`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer (got ${batchSize})`);
  model.eval();
  const results: ImagePrediction[] = [];
  const decode = async (file: string): Promise<RgbImage | undefined> => {
    try {
      return await decodeImage(file);
    } catch (error) {
      if (!(error instanceof ImageDecodeError) || !opts.onBadImage) throw error;
      opts.onBadImage(error);
      return undefined;
    }
  };
  // The next batch decodes (sharp, on the thread pool) while this one runs through the model.
  let pending = Promise.all(files.slice(0, batchSize).map(decode));
  for (let start = 0; start < files.length; start += batchSize) {
    const decoded = await pending;
    const next = files.slice(start + batchSize, start + 2 * batchSize);
    pending = Promise.all(next.map(decode));
    pending.catch(() => undefined);  // awaited on the next turn; not an unhandled rejection meanwhile
    const batchFiles = files.slice(start, start + batchSize).filter((_, i) => decoded[i]);
    const images = decoded.filter((d): d is RgbImage => d !== undefined);
    if (images.length === 0) continue;
    const logits = await model.forward(evalBatch(images, opts.transform));
    const classes = logits.shape[1];
    const predictions = batchFiles.map((file, i) => {
      const p = softmax(logits.data.subarray(i * classes, (i + 1) * classes));
      return { file, top: topK(p, k).map((index) => ({ index, label: opts.labels?.[index] ?? `class ${index}`, probability: p[index] })) };
    });
    opts.onPredictions?.(predictions);
    results.push(...predictions);
  }
  return results;
}
