// Files stay small enough to read whole: every tracked file under lib/, native/, scripts/ and bench/
// with more than MAX_LINES lines says why in its first lines, in a comment with "Size:" and a reason
// (e.g. `// Size: the 1000 ImageNet class names, data not logic.`). Anything else is split by concept.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const FOLDERS = ['lib', 'native', 'scripts', 'bench'];
const MAX_LINES = 400;
/** The reason must be in one of a file's first this many lines. */
const HEADER_LINES = 5;
/** A comment line (//, /* or *, #, <!--) that holds "Size:" and some reason after it. */
const SIZE_REASON = /^\s*(?:\/\/|\/\*|\*|#|<!--).*\bSize:\s*\S/;

/** Lines as `wc -l` counts them: a final newline ends the last line rather than starting one. */
function lineCount(text: string): number {
  if (text === '') return 0;
  const lines = text.split('\n').length;
  return text.endsWith('\n') ? lines - 1 : lines;
}

function trackedFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--', ...FOLDERS], { cwd: ROOT, encoding: 'utf8' });
  // A tracked file deleted in the working tree (mid-move) has nothing to measure.
  return out.split('\0').filter((f) => f !== '' && fs.existsSync(path.join(ROOT, f)));
}

test(`every tracked file under ${FOLDERS.join('/, ')}/ over ${MAX_LINES} lines gives a reason ("Size: …") in its first ${HEADER_LINES} lines`, () => {
  const files = trackedFiles();
  expect(files.length).toBeGreaterThan(0);
  const offenders: string[] = [];
  for (const file of files) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    const lines = lineCount(text);
    if (lines <= MAX_LINES) continue;
    const header = text.split('\n', HEADER_LINES);
    if (!header.some((line) => SIZE_REASON.test(line))) offenders.push(`${file}: ${lines} lines`);
  }
  if (offenders.length > 0) {
    throw new Error(
      `${offenders.length} file(s) over ${MAX_LINES} lines without a "Size:" comment giving the reason in their first ` +
        `${HEADER_LINES} lines; split them by concept, or state why they are long:\n  ${offenders.join('\n  ')}`,
    );
  }
});

test('the size check counts lines as wc -l does and finds a reason only in a comment', () => {
  expect(lineCount('')).toBe(0);
  expect(lineCount('a')).toBe(1);
  expect(lineCount('a\n')).toBe(1);
  expect(lineCount('a\nb\n')).toBe(2);
  expect(lineCount('a\n\n')).toBe(2);
  expect(SIZE_REASON.test('// Size: the 1000 ImageNet class names, data not logic.')).toBe(true);
  expect(SIZE_REASON.test(' * Size: one table of opcodes.')).toBe(true);
  expect(SIZE_REASON.test('# Size: a generated list.')).toBe(true);
  expect(SIZE_REASON.test('// Size:')).toBe(false);
  expect(SIZE_REASON.test('const Size: number = 1;')).toBe(false);
});
