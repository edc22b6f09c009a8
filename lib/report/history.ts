// history.csv: one row per epoch, for spreadsheets and plotting tools.
import type { EpochRecord } from '../trainer';

const COLUMNS: Array<keyof EpochRecord> = [
  'epoch', 'trainLoss', 'trainAccuracy', 'valLoss', 'valAccuracy', 'lr', 'lossScale', 'seconds', 'imagesPerSecond', 'skippedSteps',
];

export function formatHistoryCsv(history: readonly EpochRecord[]): string {
  const rows = history.map((r) => COLUMNS.map((c) => String(r[c])).join(','));
  return [COLUMNS.join(','), ...rows].join('\n') + '\n';
}
