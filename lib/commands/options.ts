// Option parsing shared by the commands: value parsers that reject bad input with one line, and
// the error class for mistakes in the user's input (exit code 2).
import { InvalidArgumentError } from 'commander';
import type { Device } from '../models';

/** A mistake in the command line (exit code 2), found after commander has parsed it. */
export class UsageError extends Error {}

/** An integer >= min (and <= max when given). */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(max === Number.MAX_SAFE_INTEGER ? `expected an integer >= ${min}` : `expected an integer from ${min} to ${max}`);
    }
    return n;
  };
}

/** A finite number in [min, max] (or (min, max] / [min, max) with the exclusive flags). */
export function decimal(range: { min: number; max?: number; minExclusive?: boolean; maxExclusive?: boolean }) {
  const { min, max = Infinity, minExclusive = false, maxExclusive = false } = range;
  const lower = `${minExclusive ? '>' : '>='} ${min}`;
  const upper = max === Infinity ? '' : ` and ${maxExclusive ? '<' : '<='} ${max}`;
  return (value: string): number => {
    const n = Number(value);
    const ok = value.trim() !== '' && Number.isFinite(n)
      && (minExclusive ? n > min : n >= min) && (maxExclusive ? n < max : n <= max);
    if (!ok) throw new InvalidArgumentError(`expected a number ${lower}${upper}`);
    return n;
  };
}

/** 'auto', 'cpu', 'cuda' or 'cuda:N'. */
export function device(value: string): Device {
  if (!/^(auto|cpu|cuda(:\d+)?)$/.test(value)) throw new InvalidArgumentError("expected auto, cpu, cuda or cuda:N");
  return value as Device;
}

/** A folder path: not empty (an empty --out would write the run into the current directory). */
export function folder(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('expected a folder, not an empty string');
  return value;
}
