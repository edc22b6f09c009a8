// Streams an image folder's split into a native epoch or evaluation: the batches the native loop
// will pop (this rank's images of the epoch's permutation, or of the evaluation split) are decoded
// (lib/images/decode.ts) and cropped (PIL's arithmetic, in the addon) on libuv's pool, two batches
// at a time, and pushed in order into a NativeBatchFeed, never more than `prefetch` batches ahead of the loop. Memory stays bounded by
// that window whatever the folder's size. Every crop and flip derives from (seed, epoch, the
// image's position in the epoch's permutation), so a resumed or re-sharded run sees the same ones.
import { ImageDecodeError } from '../errors';
import { decodeImage, RgbImage } from '../images/decode';
import { cachedCopy, evalCrop, FolderTransform, trainCrop } from '../images/folder-transform';
import { native, NativeBatchFeedHandle } from '../native';
import { createRng, mixSeed } from '../random';
import type { ImageFolderSplit } from './image-folder';

/** What the native side pops next: a training epoch from a batch on, or a whole evaluation. */
export type FeedPhase =
  | {
      kind: 'train';
      epoch: number;
      /** The first batch not yet trained (a resumed epoch starts past 0). */
      firstBatch: number;
      batches: number;
      /** This rank's images of the epoch, in order (the native session's epochIndices). */
      order: Int32Array;
      /** Images per batch on this rank (the global batch / world size). */
      rankBatch: number;
      rank: number;
      worldSize: number;
      seed: number;
    }
  | { kind: 'eval'; batchSize: number; rank: number; worldSize: number };

export interface FolderFeederOptions {
  transform: FolderTransform;
  /** Batches decoded ahead of the training loop. Default 4. */
  prefetch?: number;
  /** Leave out files that cannot be decoded (each reported once to onBadImage) instead of failing. */
  skipBadImages?: boolean;
  /**
   * Keep each image after its first decode, resized so that its shorter side is the evaluation
   * resize (floor(size / crop_pct)): later epochs crop from memory without reading or decoding.
   */
  cacheImages?: boolean;
  onBadImage?: (error: ImageDecodeError) => void;
}

interface PlannedBatch {
  index: number;
  images: number[];
  /** Training: the seed of each image's crop and flip. */
  seeds?: number[];
}

const EVALUATION_PHASE = -1;

export class FolderFeeder {
  readonly feed: NativeBatchFeedHandle;
  /** Files found undecodable (with skipBadImages): left out of every later batch. */
  private readonly bad = new Set<number>();
  private wake?: () => void;
  private readonly prefetch: number;
  /** cacheImages: each image's resized copy once it has been decoded. */
  private readonly cache?: Array<RgbImage | undefined>;

  constructor(private readonly split: ImageFolderSplit, private readonly opts: FolderFeederOptions) {
    this.prefetch = opts.prefetch ?? 4;
    if (opts.cacheImages) this.cache = new Array(split.files.length);
    this.feed = new (native().NativeBatchFeed)(split.files.length, () => this.wake?.());
  }

  get size(): number {
    return this.split.files.length;
  }

  /**
   * Runs `work` (the native epoch or evaluation popping from this feed) while feeding it `phase`.
   * A file that cannot be decoded (without skipBadImages) rejects with its ImageDecodeError.
   */
  async run<T>(phase: FeedPhase, work: () => Promise<T>): Promise<T> {
    this.feed.reset();
    const state = { cancelled: false };
    const feeding = this.produce(phase, state).then(
      () => undefined,
      (error: unknown) => {
        this.feed.fail(String((error as Error)?.message ?? error));
        return error;
      },
    );
    let result: T | undefined;
    let failure: unknown;
    let failed = false;
    try {
      result = await work();
    } catch (error) {
      failed = true;
      failure = error;
    }
    // The loop is done (or stopped early): the feeder stops at its next batch.
    state.cancelled = true;
    this.wake?.();
    const feedError = await feeding;
    if (feedError !== undefined && !(feedError instanceof Cancelled)) throw feedError;
    if (failed) throw failure;
    return result as T;
  }

  dispose(): void {
    this.feed.dispose();
  }

  private plan(phase: FeedPhase): PlannedBatch[] {
    const batches: PlannedBatch[] = [];
    if (phase.kind === 'train') {
      for (let b = phase.firstBatch; b < phase.batches; b++) {
        const start = b * phase.rankBatch;
        const end = Math.min(start + phase.rankBatch, phase.order.length);
        const images = Array.from(phase.order.subarray(start, end));
        // The image's place in the padded permutation (DistributedSampler's), whatever the world size.
        const seeds = images.map((_, j) => mixSeed(phase.seed, phase.epoch, phase.rank + (start + j) * phase.worldSize));
        batches.push({ index: b, images, seeds });
      }
    } else {
      const mine: number[] = [];
      for (let i = phase.rank; i < this.size; i += phase.worldSize) mine.push(i);
      for (let start = 0, b = 0; start < mine.length; start += phase.batchSize, b++) {
        batches.push({ index: b, images: mine.slice(start, start + phase.batchSize) });
      }
    }
    return batches;
  }

  private async produce(phase: FeedPhase, state: { cancelled: boolean }): Promise<void> {
    const epoch = phase.kind === 'train' ? phase.epoch : EVALUATION_PHASE;
    const inFlight: Array<Promise<Prepared>> = [];
    const push = (p: Prepared) => {
      if (!state.cancelled) this.feed.push(epoch, p.index, p.pixels, [p.labels.length, p.size, p.size, 3], p.labels);
    };
    try {
      for (const batch of this.plan(phase)) {
        // Room for one more: fewer than `prefetch` batches queued natively or being decoded.
        while (!state.cancelled && this.feed.pending() + inFlight.length >= this.prefetch) {
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
        if (state.cancelled) throw new Cancelled();
        const prepared = this.prepare(batch, phase.kind === 'train');
        // Awaited in order below; a batch failing before its turn must not count as unhandled.
        prepared.catch(() => undefined);
        inFlight.push(prepared);
        // Two batches decode at once, so the pool never idles on a batch's last images.
        if (inFlight.length >= 2) push(await inFlight.shift()!);
      }
      while (inFlight.length > 0) push(await inFlight.shift()!);
    } catch (error) {
      throw state.cancelled ? new Cancelled() : error;
    }
  }

  /** The image decoded, and with cacheImages resized and kept. */
  private async load(image: number, file: string): Promise<RgbImage> {
    const decoded = await decodeImage(file);
    if (!this.cache) return decoded;
    const copy = await cachedCopy(decoded, this.opts.transform);
    this.cache[image] = copy;
    return copy;
  }

  private async prepare(batch: PlannedBatch, train: boolean): Promise<Prepared> {
    const t = this.opts.transform;
    const bytes = t.size * t.size * 3;
    const pixels = new Uint8Array(batch.images.length * bytes);
    const ok = await Promise.all(
      batch.images.map(async (image, j) => {
        if (this.bad.has(image)) return false;
        const file = this.split.files[image];
        try {
          const decoded = this.cache?.[image] ?? (await this.load(image, file));
          if (train) await trainCrop(decoded, t, createRng(batch.seeds![j]), pixels, j * bytes);
          else await evalCrop(decoded, t, pixels, j * bytes);
          return true;
        } catch (error) {
          if (!(error instanceof ImageDecodeError) || !this.opts.skipBadImages) throw error;
          if (!this.bad.has(image)) {
            this.bad.add(image);
            this.opts.onBadImage?.(error);
          }
          return false;
        }
      }),
    );
    const kept = ok.flatMap((good, j) => (good ? [j] : []));
    const labels = Int32Array.from(kept, (j) => this.split.labels[batch.images[j]]);
    if (kept.length === batch.images.length) return { index: batch.index, pixels, labels, size: t.size };
    const packed = new Uint8Array(kept.length * bytes);
    kept.forEach((j, k) => packed.set(pixels.subarray(j * bytes, (j + 1) * bytes), k * bytes));
    return { index: batch.index, pixels: packed, labels, size: t.size };
  }
}

interface Prepared {
  index: number;
  pixels: Uint8Array;
  labels: Int32Array;
  size: number;
}

/** The feeder stopped because the loop it fed ended first: not a failure. */
class Cancelled extends Error {}
