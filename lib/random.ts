// A small seeded PRNG, so that splits and generated data are the same on every machine and run.

// A module constant rather than the global `Math` on each call: global lookups are slow in vm contexts (jest).
const { imul, floor } = Math;

/** Folds any number into an unsigned 32-bit seed (non-integers and negatives included). */
function toSeed(seed: number): number {
  if (!Number.isFinite(seed)) throw new Error(`seed must be a finite number, got ${seed}`);
  const whole = Math.trunc(seed);
  // Keep the high bits of large seeds instead of dropping them.
  return (whole ^ Math.floor(whole / 0x100000000)) >>> 0;
}

/**
 * A generator of uniform numbers in [0, 1), fully determined by `seed` (mulberry32: 32-bit state,
 * period 2^32, fast and good enough for shuffles and procedural data).
 */
export function createRng(seed: number): () => number {
  let state = toSeed(seed);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x100000000;
  };
}

/** A uniformly random permutation of 0..n-1 (Fisher–Yates), the same for the same `n` and `seed`. */
export function permutation(n: number, seed: number): Uint32Array {
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`permutation size must be an integer in [0, 2^32), got ${n}`);
  const rng = createRng(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = floor(rng() * (i + 1));
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

/**
 * One 32-bit seed from several integers (a seed, an epoch, a position...), each mixed in with
 * murmur3's finaliser so that neighbouring inputs give unrelated streams.
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const part of parts) {
    h = imul(h ^ toSeed(part), 0x85ebca6b);
    h ^= h >>> 13;
    h = imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}
