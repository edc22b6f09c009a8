// Small numeric helpers for comparing logits and trained weights with PyTorch's.
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

/** ||a - b|| / ||b||, the norms over the whole tensor (||a - b|| when b is all zeros). */
export function relativeDifference(a: Float32Array | Float64Array | BigInt64Array, b: Float32Array | Float64Array | BigInt64Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Number(a[i]);
    const y = Number(b[i]);
    diff += (x - y) ** 2;
    norm += y * y;
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}

/** Every tensor of a safetensors file as a typed array of its dtype. */
export async function readTensors(file: string): Promise<Map<string, Float32Array | Float64Array | BigInt64Array>> {
  const out = new Map<string, Float32Array | Float64Array | BigInt64Array>();
  const { tensors } = await readSafetensors(file);
  for (const [name, t] of tensors) {
    const bytes = t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength);
    out.set(name, t.dtype === 'I64' ? new BigInt64Array(bytes) : t.dtype === 'F64' ? new Float64Array(bytes) : new Float32Array(bytes));
  }
  return out;
}
