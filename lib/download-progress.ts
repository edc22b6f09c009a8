// A download's progress (see download.ts): a bar on a terminal, a line every ~10% otherwise (every
// 16 MiB when the size is unknown), or nothing when quiet; all on stderr.
import * as path from 'path';
import { SingleBar } from 'cli-progress';
import type { DownloadOptions } from './download';
import { formatBytes } from './report/format';

/** Without a Content-Length, a plain progress line every this many bytes. */
const UNKNOWN_TOTAL_STEP = 16 * 1024 * 1024;

function fileNameOf(url: string): string {
  const base = path.posix.basename(new URL(url).pathname);
  try {
    return decodeURIComponent(base) || url;
  } catch {
    return base || url;
  }
}

/** A progress bar on a terminal, a line every ~10% otherwise, or nothing when quiet. */
export class Progress {
  private readonly label: string;
  private readonly mode: 'bar' | 'lines' | 'none';
  private bar: SingleBar | undefined;
  private startedAt = 0;
  private nextLine = 0;

  constructor(private readonly opts: DownloadOptions, private readonly total: number | undefined) {
    this.label = opts.label ?? fileNameOf(opts.url);
    this.mode = opts.quiet ? 'none' : process.stderr.isTTY ? 'bar' : 'lines';
  }

  private speed(received: number): string {
    const seconds = Math.max((Date.now() - this.startedAt) / 1000, 1e-3);
    return `${formatBytes(received / seconds)}/s`;
  }

  private payload(received: number): Record<string, string> {
    return {
      label: this.label,
      received: formatBytes(received),
      size: this.total === undefined ? '?' : formatBytes(this.total),
      speed: this.speed(received),
    };
  }

  start(): void {
    this.startedAt = Date.now();
    if (this.mode === 'bar') {
      const known = this.total !== undefined && this.total > 0;
      this.bar = new SingleBar({
        stream: process.stderr,
        format: known
          ? '{label} [{bar}] {percentage}% | {received} / {size} | {speed} | ETA {eta_formatted}'
          : '{label} {received} | {speed}',
        barCompleteChar: '#',
        barIncompleteChar: '-',
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      });
      this.bar.start(known ? (this.total as number) : 1, 0, this.payload(0));
    } else if (this.mode === 'lines') {
      const size = this.total === undefined ? 'unknown size' : formatBytes(this.total);
      process.stderr.write(`Downloading ${this.label} (${size}) from ${this.opts.url}\n`);
      this.nextLine = this.total === undefined ? UNKNOWN_TOTAL_STEP : 0.1;
    }
  }

  update(received: number): void {
    if (this.mode === 'bar' && this.bar) {
      const known = this.total !== undefined && this.total > 0;
      this.bar.update(known ? Math.min(received, this.total as number) : 0, this.payload(received));
    } else if (this.mode === 'lines') {
      if (this.total !== undefined && this.total > 0) {
        const fraction = received / this.total;
        if (fraction >= this.nextLine && fraction < 1) {
          process.stderr.write(
            `  ${this.label}: ${Math.floor(fraction * 100)}% (${formatBytes(received)} of ${formatBytes(this.total)}, ${this.speed(received)})\n`,
          );
          while (this.nextLine <= fraction) this.nextLine += 0.1;
        }
      } else if (this.total === undefined && received >= this.nextLine) {
        process.stderr.write(`  ${this.label}: ${formatBytes(received)} (${this.speed(received)})\n`);
        while (this.nextLine <= received) this.nextLine += UNKNOWN_TOTAL_STEP;
      }
    }
  }

  finish(ok: boolean, received: number): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
    if (this.mode === 'lines') {
      process.stderr.write(
        ok
          ? `  ${this.label}: done, ${formatBytes(received)} (${this.speed(received)})\n`
          : `  ${this.label}: failed after ${formatBytes(received)}\n`,
      );
    }
  }
}
