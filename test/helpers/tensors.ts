// Small numeric helpers for comparing logits.
import { float32Values, readSafetensors } from '../../lib/safetensors';
import type { TensorData } from '../../lib/models';

export async function readTensor(file: string, name: string): Promise<TensorData> {
  const t = (await readSafetensors(file)).tensors.get(name);
  if (!t) throw new Error(`${file} has no tensor '${name}'`);
  return { shape: t.shape, data: float32Values(t) };
}

/** max |a - b| / max |b|: the error relative to the reference's scale. */
export function relativeError(actual: Float32Array, reference: Float32Array): number {
  if (actual.length !== reference.length) throw new Error(`length ${actual.length} != ${reference.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - reference[i]));
    scale = Math.max(scale, Math.abs(reference[i]));
  }
  if (!Number.isFinite(diff)) return Infinity;
  return scale === 0 ? diff : diff / scale;
}
