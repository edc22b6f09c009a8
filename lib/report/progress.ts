// Training progress for the terminal: a cli-progress bar per epoch on a TTY, otherwise at most
// about ten plain lines per epoch; and the one-line summary after each epoch.
import { SingleBar } from 'cli-progress';
import type { EpochRecord } from '../run-files';
import type { BatchEvent } from '../trainer';
import { fixed } from './format';

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** `epoch 3/10  train loss 0.4319 acc 0.8625  val loss 0.5423 acc 0.8100  21.1 s  22.7 img/s` */
export function formatEpochLine(r: EpochRecord, epochs: number): string {
  return `epoch ${r.epoch}/${epochs}  train loss ${fixed(r.trainLoss, 4)} acc ${fixed(r.trainAccuracy, 4)}  ` +
    `val loss ${fixed(r.valLoss, 4)} acc ${fixed(r.valAccuracy, 4)}  ${fixed(r.seconds, 1)} s  ${fixed(r.imagesPerSecond, 1)} img/s`;
}

function remaining(e: BatchEvent): number {
  return e.batch > 0 ? (e.seconds / e.batch) * (e.batches - e.batch) : NaN;
}

export class TrainingProgress {
  private bar?: SingleBar;
  private barEpoch = -1;
  private lastDecile = new Map<number, number>();
  private stopped = false;

  /** `tty`: draw bars (else plain lines); `epochs`: the run's total epochs; `write`: where lines go. */
  constructor(
    private readonly tty: boolean,
    private readonly epochs: number,
    private readonly write: (line: string) => void = (line) => console.log(line),
  ) {}

  batch(e: BatchEvent): void {
    if (this.stopped) return;
    const label = `${e.epoch + 1}/${this.epochs}`;
    const payload = {
      label,
      ips: fixed(e.imagesPerSecond, 1),
      loss: fixed(e.loss, 4),
      acc: fixed(e.accuracy, 4),
      remaining: e.batch >= e.batches ? 'validating' : `ETA ${formatDuration(remaining(e))}`,
    };
    if (this.tty) {
      if (this.bar && this.barEpoch !== e.epoch) this.clearBar();
      if (!this.bar) {
        this.bar = new SingleBar({
          format: 'epoch {label} {bar} {value}/{total} | {ips} img/s | loss {loss} acc {acc} | {remaining}',
          stream: process.stdout,
          barsize: 24,
          hideCursor: true,
          clearOnComplete: true,
          barCompleteChar: '\u2588',
          barIncompleteChar: '\u2591',
        });
        this.barEpoch = e.epoch;
        this.bar.start(e.batches, e.batch, payload);
      } else {
        this.bar.update(e.batch, payload);
      }
      return;
    }
    // Plain lines: one each time the epoch passes another tenth, so at most about ten an epoch.
    // (and the epoch's first report, so a slow epoch shows a sign of life early).
    const decile = Math.floor((e.batch * 10) / e.batches);
    const last = this.lastDecile.get(e.epoch);
    if (last !== undefined && decile <= last) return;
    this.lastDecile.set(e.epoch, decile);
    const eta = e.batch >= e.batches ? '' : `  ETA ${formatDuration(remaining(e))}`;
    this.write(`epoch ${label}  batch ${e.batch}/${e.batches}  loss ${payload.loss} acc ${payload.acc}  ${payload.ips} img/s${eta}`);
  }

  epoch(r: EpochRecord): void {
    this.clearBar();
    this.write(formatEpochLine(r, this.epochs));
  }

  /** Removes the bar (if any); no more progress is drawn. */
  stop(): void {
    this.clearBar();
    this.stopped = true;
  }

  private clearBar(): void {
    this.bar?.stop();
    this.bar = undefined;
    this.barEpoch = -1;
  }
}
