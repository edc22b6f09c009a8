// history.csv: one row per epoch, for spreadsheets and plotting tools.
import { EPOCH_RECORD_FIELDS, EpochRecord } from '../run-files';

const COLUMNS: ReadonlyArray<keyof EpochRecord> = EPOCH_RECORD_FIELDS;

export function formatHistoryCsv(history: readonly EpochRecord[]): string {
  const rows = history.map((r) => COLUMNS.map((c) => String(r[c])).join(','));
  return [COLUMNS.join(','), ...rows].join('\n') + '\n';
}
