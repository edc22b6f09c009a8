// `-c FILE` / `--config FILE`: a command's options from a YAML (or JSON) file, as timm's args.yaml.
// Keys are the long option names, kebab-case as on the command line (`batch-size`, `no-aux-logits`)
// or camelCase as commander names them (`batchSize`, `auxLogits`). Each value goes through the
// option's own parser (lib/commands/options.ts, commander's choices), so a value is checked exactly
// as the flag's; an option given on the command line wins over the file. Values from the file carry
// commander's value source 'config', which the commands count as given by the user (it beats --quick
// and a resumed run's options). Mistakes in the file are usage errors (exit code 2), one line each.
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { parseDocument, Document } from 'yaml';
import { writeFileAtomic } from '../atomic-write';
import { UsageError } from './options';

/** The file each run folder holds its options in. */
export const CONFIG_FILE = 'config.yaml';

/** The option's attribute name, for this module's own lookups. */
const CONFIG_OPTION = 'config';

/** `batchSize` -> `batch-size`. */
export const kebabCase = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Adds -c/--config to a command whose action calls applyConfigFile(). */
export function addConfigOption(cmd: Command): Command {
  return cmd.option('-c, --config <file>', `options from a YAML or JSON file, keyed by the long option names (batch-size: 64, or batchSize); options given here win. Each run folder holds its options as ${CONFIG_FILE}`);
}

/** Whether the user set an option: on the command line, in the environment or in the config file. */
export function givenByUser(cmd: Command, key: string): boolean {
  const source = cmd.getOptionValueSource(key);
  return source === 'cli' || source === 'env' || source === 'config';
}

/** Where a key of the file leads: the option, and whether the key names its negation (`no-aux-logits`). */
interface KeyTarget {
  option: Option;
  negated: boolean;
}

/** Every key the file may use for the command's options, each to its option. */
function knownKeys(cmd: Command): Map<string, KeyTarget> {
  const keys = new Map<string, KeyTarget>();
  for (const option of cmd.options) {
    const attribute = option.attributeName();
    if (attribute === CONFIG_OPTION) continue;
    keys.set(attribute, { option, negated: false });
    keys.set(kebabCase(attribute), { option, negated: false });
    if (option.negate) keys.set(option.name(), { option, negated: true });
  }
  return keys;
}

/** Levenshtein distance: how many one-character edits turn a into b. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length];
}

/** The known key closest to `key` (case, '-' and '_' aside), if it is close enough to be a typo. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  const plain = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(plain(key), plain(name));
    if (!best || distance < best.distance) best = { name, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.name : undefined;
}

/** The file's mapping of keys to values; a usage error when it cannot be read or is not one. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist' : code === 'EISDIR' ? 'it is a folder' : (error as Error).message;
    throw new UsageError(`cannot read the config file ${file}: ${why}`);
  }
  const doc = parseDocument(text);
  if (doc.errors.length) {
    // The first line of yaml's message: what is wrong, at which line and column.
    throw new UsageError(`the config file ${file} is not valid YAML or JSON: ${doc.errors[0].message.split('\n')[0].replace(/:$/, '')}`);
  }
  const content: unknown = doc.toJS();
  if (content === null || content === undefined) return {};
  if (typeof content !== 'object' || Array.isArray(content) || content instanceof Uint8Array || content instanceof Map || content instanceof Set) {
    const got = Array.isArray(content) ? 'a list' : typeof content === 'object' ? 'a value of another kind' : `${typeof content} ${JSON.stringify(content)}`;
    throw new UsageError(`the config file ${file} must map option names to values (batch-size: 64); got ${got}`);
  }
  return content as Record<string, unknown>;
}

/** The option's value from the file's value, through the option's own parser. */
function optionValue(cmd: Command, file: string, key: string, raw: unknown, target: KeyTarget): unknown {
  const { option, negated } = target;
  const fail = (why: string) => new UsageError(`config file ${file}: ${key}: ${JSON.stringify(raw)} is invalid: ${why}`);
  if (!option.required && !option.optional) {
    // A flag without a value: --quick, --no-aux-logits (key no-aux-logits: true, or aux-logits: false).
    if (typeof raw !== 'boolean') throw fail('expected true or false');
    return negated ? !raw : raw;
  }
  if (negated) throw fail('expected true or false');
  // A list, for options that take a comma-separated one (compare's --activations).
  const hasParser = option.parseArg !== undefined && option.argChoices === undefined;
  const scalar = (v: unknown) => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
  let text: string;
  if (scalar(raw)) text = String(raw);
  else if (Array.isArray(raw) && hasParser && raw.length > 0 && raw.every(scalar)) text = raw.join(',');
  else throw fail(`expected a value for ${option.flags.replace(/^-\w, /, '')}`);
  if (!option.parseArg) return text;
  try {
    return option.parseArg(text, cmd.getOptionValue(option.attributeName()));
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw fail(error.message);
    throw error;
  }
}

/**
 * Merges the file's options into the command's parsed ones: each key must name an option, each
 * value must pass the option's parser, and an option the user gave on the command line (or in the
 * environment) keeps that value. A key whose value is null leaves the option as it is.
 */
export function mergeConfig(cmd: Command, file: string, entries: Record<string, unknown>): void {
  const known = knownKeys(cmd);
  const names = [...new Set([...known.values()].map(({ option }) => option.name()))];
  const seen = new Map<string, string>();
  for (const [key, raw] of Object.entries(entries)) {
    const target = known.get(key);
    if (!target) {
      const why = key === CONFIG_OPTION || key === 'c' ? 'a config file cannot name another' : 'unknown option';
      const suggestion = closestKey(key, names);
      throw new UsageError(`config file ${file}: ${why} '${key}'${suggestion ? ` (did you mean '${suggestion}'?)` : ''}; the options of ${cmd.name()}: ${names.join(', ')}`);
    }
    const attribute = target.option.attributeName();
    const earlier = seen.get(attribute);
    if (earlier !== undefined) throw new UsageError(`config file ${file}: '${earlier}' and '${key}' set the same option; keep one`);
    seen.set(attribute, key);
    if (raw === null) continue;
    const value = optionValue(cmd, file, key, raw, target);
    const source = cmd.getOptionValueSource(attribute);
    if (source === 'cli' || source === 'env') continue;
    cmd.setOptionValueWithSource(attribute, value, 'config');
  }
  checkConflicts(cmd, file);
}

/** Options declared to conflict (.conflicts()), which commander checks before the file is read. */
function checkConflicts(cmd: Command, file: string): void {
  // commander keeps the names an option conflicts with in conflictsWith (not in its typings).
  const conflicts = (o: Option) => (o as Option & { conflictsWith?: string[] }).conflictsWith ?? [];
  const set = cmd.options.filter((o) => cmd.getOptionValue(o.attributeName()) !== undefined && givenByUser(cmd, o.attributeName()));
  for (const option of set) {
    const other = set.find((o) => conflicts(option).includes(o.attributeName()));
    if (other) throw new UsageError(`option '${option.flags}' cannot be used with option '${other.flags}' (one of them from the config file ${file})`);
  }
}

/** Reads --config (when given) into the command's options; returns the options, merged. */
export function applyConfigFile(cmd: Command): Record<string, unknown> {
  const file = cmd.getOptionValue(CONFIG_OPTION) as string | undefined;
  if (file !== undefined) mergeConfig(cmd, file, readConfigFile(file));
  return cmd.opts();
}

/** One option in a written config file: its key (kebab-case), value and an optional line comment. */
export interface ConfigEntry {
  key: string;
  value: string | number | boolean;
  comment?: string;
}

/** The text of a config file: the header as comment lines, then one `key: value` line per entry. */
export function formatConfigFile(header: readonly string[], entries: readonly ConfigEntry[]): string {
  // compat: strings YAML 1.1 readers (PyYAML) would take for booleans, as 'off', are quoted.
  const doc = new Document(Object.fromEntries(entries.map((e) => [e.key, e.value])), { compat: 'yaml-1.1' });
  doc.commentBefore = header.map((line) => ` ${line}`).join('\n');
  const items = (doc.contents as unknown as { items: Array<{ value: { comment?: string } }> }).items;
  entries.forEach((e, i) => {
    if (e.comment) items[i].value.comment = ` ${e.comment}`;
  });
  return doc.toString({ lineWidth: 0 });
}

/** Writes `dir`/config.yaml (atomically: a reader sees the old file or the new one). */
export async function writeConfigFile(dir: string, header: readonly string[], entries: readonly ConfigEntry[]): Promise<string> {
  const file = path.join(dir, CONFIG_FILE);
  await fs.promises.mkdir(dir, { recursive: true });
  await writeFileAtomic(file, formatConfigFile(header, entries));
  return file;
}
