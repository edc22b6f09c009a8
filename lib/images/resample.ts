// Resizing as PIL's `Image.resize(size, BILINEAR | BICUBIC)` does it, which is what torchvision's
// `Resize` runs on a PIL image: a separable convolution whose kernel widens with the reduction
// (antialiasing), with PIL's fixed-point arithmetic (libImaging/Resample.c): coefficients in
// 22-bit fixed point, the horizontal pass first, rounded and clipped to 8 bits, then the vertical.
// Reproducing the integer steps gives PIL's bytes exactly; libvips's kernels (sharp) differ by up
// to 6 levels when reducing and far more when enlarging, which is why this is not done in sharp.
import type { RgbImage } from './decode';

export type Interpolation = 'bilinear' | 'bicubic';

interface Filter {
  support: number;
  weight(x: number): number;
}

const FILTERS: Record<Interpolation, Filter> = {
  bilinear: {
    support: 1,
    weight: (x) => {
      const a = Math.abs(x);
      return a < 1 ? 1 - a : 0;
    },
  },
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

const PRECISION_BITS = 32 - 8 - 2;

interface Coefficients {
  /** Taps per output sample. */
  ksize: number;
  /** First input sample and tap count per output sample. */
  start: Int32Array;
  count: Int32Array;
  /** ksize fixed-point weights per output sample. */
  weights: Int32Array;
}

/** precompute_coeffs + normalize_coeffs_8bpc of Resample.c, for the whole input range. */
function coefficients(inSize: number, outSize: number, filter: Filter): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterScale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      k[x] = filter.weight((x + xmin - center + 0.5) * ss);
      ww += k[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x] / ww : k[x];
      // (int)(±0.5 + w * 2^22): C truncates toward zero
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

function clip8(v: number): number {
  if (v >= 1 << (PRECISION_BITS + 8)) return 255;
  if (v <= 0) return 0;
  return v >> PRECISION_BITS;
}

/**
 * `image` resized to width x height as PIL's `resize((width, height), filter)` does, byte for byte.
 * The accumulators stay below 2^31 as in PIL (weights sum to 2^22, samples are < 2^8).
 */
export function resize(image: RgbImage, width: number, height: number, interpolation: Interpolation): RgbImage {
  if (width === image.width && height === image.height) return { width, height, data: image.data.slice() };
  const filter = FILTERS[interpolation];
  const half = 1 << (PRECISION_BITS - 1);
  let src = image;
  if (width !== image.width) {
    const c = coefficients(image.width, width, filter);
    const out = new Uint8Array(width * image.height * 3);
    for (let y = 0; y < image.height; y++) {
      const row = y * image.width * 3;
      for (let xx = 0; xx < width; xx++) {
        let s0 = half;
        let s1 = half;
        let s2 = half;
        const first = c.start[xx];
        const base = xx * c.ksize;
        for (let x = 0; x < c.count[xx]; x++) {
          const w = c.weights[base + x];
          const p = row + (first + x) * 3;
          s0 += image.data[p] * w;
          s1 += image.data[p + 1] * w;
          s2 += image.data[p + 2] * w;
        }
        const o = (y * width + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    src = { width, height: image.height, data: out };
  }
  if (height === src.height) return src;
  const c = coefficients(src.height, height, filter);
  const out = new Uint8Array(width * height * 3);
  const stride = width * 3;
  for (let yy = 0; yy < height; yy++) {
    const first = c.start[yy];
    const base = yy * c.ksize;
    for (let i = 0; i < stride; i++) {
      let s = half;
      for (let y = 0; y < c.count[yy]; y++) s += src.data[(first + y) * stride + i] * c.weights[base + y];
      out[yy * stride + i] = clip8(s);
    }
  }
  return { width, height, data: out };
}
