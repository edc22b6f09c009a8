// torchvision's RandomResizedCrop.get_params, on a seeded generator: a box covering a random share
// of the image's area (scale, default 8-100 %) at a random log-uniform aspect ratio (default 3/4 to
// 4/3), tried 10 times, else the largest centred box inside the ratio limits. The numbers follow
// torchvision's (Python's round(), randint bounds); the random draws are ours, so boxes are
// distributed alike but not equal to torch's for the same seed.
import { roundHalfEven } from './eval-transform';

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface RandomResizedCropOptions {
  /** Range of the box's area as a share of the image's. Default [0.08, 1]. */
  scale?: readonly [number, number];
  /** Range of the box's width / height. Default [3/4, 4/3]. */
  ratio?: readonly [number, number];
}

export const DEFAULT_RRC_SCALE = [0.08, 1] as const;
export const DEFAULT_RRC_RATIO = [3 / 4, 4 / 3] as const;

/** The crop box for an image of `width` x `height`, drawing uniform numbers in [0, 1) from `random`. */
export function randomResizedCropBox(width: number, height: number, random: () => number, o: RandomResizedCropOptions = {}): CropBox {
  const [minScale, maxScale] = o.scale ?? DEFAULT_RRC_SCALE;
  const [minRatio, maxRatio] = o.ratio ?? DEFAULT_RRC_RATIO;
  const area = width * height;
  const logMin = Math.log(minRatio);
  const logMax = Math.log(maxRatio);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (minScale + (maxScale - minScale) * random());
    const aspect = Math.exp(logMin + (logMax - logMin) * random());
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      // torch.randint(0, n + 1): uniform over 0..n.
      const top = Math.floor(random() * (height - h + 1));
      const left = Math.floor(random() * (width - w + 1));
      return { top, left, height: h, width: w };
    }
  }
  // Fallback: the whole image, narrowed to the ratio limits, centred.
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < minRatio) h = roundHalfEven(w / minRatio);
  else if (inRatio > maxRatio) w = roundHalfEven(h * maxRatio);
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}
