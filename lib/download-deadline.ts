// The overall deadline of a download (see download.ts): the option, else the environment variable
// XCEPTION_TORCH_DOWNLOAD_DEADLINE (seconds), else 2 hours; and how a duration reads in its messages.
import type { DownloadOptions } from './download';

const DEFAULT_DEADLINE_MS = 2 * 60 * 60 * 1000;
/** Environment variable: the overall deadline of a download, in seconds. */
export const DEADLINE_VARIABLE = 'XCEPTION_TORCH_DOWNLOAD_DEADLINE';

/** `600` → `"0.6 s"`, `5400000` → `"1.5 h"`. */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${Math.round(s * 10) / 10} s`;
  if (s < 3600) return `${Math.round((s / 60) * 10) / 10} min`;
  return `${Math.round((s / 3600) * 10) / 10} h`;
}

/** The overall deadline in milliseconds: the option, else the environment variable (seconds), else 2 hours. */
export function deadlineOf(opts: Pick<DownloadOptions, 'deadlineMs' | 'env'>): number {
  if (opts.deadlineMs !== undefined) {
    if (!(Number.isFinite(opts.deadlineMs) && opts.deadlineMs > 0)) {
      throw new Error(`deadlineMs must be a positive number of milliseconds, got ${opts.deadlineMs}`);
    }
    return opts.deadlineMs;
  }
  const raw = (opts.env ?? process.env)[DEADLINE_VARIABLE]?.trim();
  if (raw === undefined || raw === '') return DEFAULT_DEADLINE_MS;
  const seconds = Number(raw);
  if (!(Number.isFinite(seconds) && seconds > 0)) {
    throw new Error(`${DEADLINE_VARIABLE} must be a positive number of seconds, got "${raw}"`);
  }
  return seconds * 1000;
}
