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
