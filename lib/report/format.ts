// Figures for people: every printed number goes through here, so a missing one (null in a JSON
// file, where NaN and infinity are written as null) or a non-finite one prints as a word rather
// than throwing.

/** `value` with `digits` decimals; 'nan', 'inf', '-inf' or 'n/a' (null or undefined) otherwise. */
export function fixed(value: number | null | undefined, digits: number): string {
  if (value === null || value === undefined || typeof value !== 'number') return 'n/a';
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  return value.toFixed(digits);
}

/** A fraction as a percentage with `digits` decimals ('n/a' etc. as `fixed`). */
export function percent(value: number | null | undefined, digits = 2): string {
  const text = fixed(typeof value === 'number' ? value * 100 : value, digits);
  return /^-?\d/.test(text) ? `${text}%` : text;
}

/** `1536` → `"1.5 KiB"`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '? B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const sign = n < 0 ? '-' : '';
  if (unit === 0) return `${sign}${value} B`;
  return `${sign}${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
