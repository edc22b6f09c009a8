// The comparison as a terminal table (cli-table3) and as compare.md. Both show the same columns:
// the reference notebook's (parameters, accuracy, running time) and what a run measured besides
// (images/s, peak memory, multiply-accumulates, accuracy per million parameters), then the
// reference notebook's published figures in rows of their own.
import Table from 'cli-table3';
import { accuracyPerMillionParameters, Comparison, ComparisonRow } from '../compare';
import type { PeakMemory } from '../peak-memory';
import { REFERENCE_SETUP, ReferenceResult } from '../reference-results';
import { formatCount } from './summary-table';
import { fixed, formatBytes, percent } from './format';

/** What one line of the table shows, from a run of ours or from the reference. */
interface Line {
  label: string;
  reference: boolean;
  parameters?: number;
  accuracy?: number;
  runningSeconds?: number;
  trainImagesPerSecond?: number;
  inferImagesPerSecond?: number;
  peakMemory?: PeakMemory | null;
  macsPerImage?: number;
  accuracyPerMillionParameters?: number;
}


const grouped = (digits: number) => (n: number) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : fixed(n, digits);

interface Column {
  head: string;
  align: 'left' | 'right';
  /** The cell; undefined when the line has no such figure. */
  cell(line: Line): string | undefined;
}

const COLUMNS: readonly Column[] = [
  { head: 'Model', align: 'left', cell: (l) => l.label },
  { head: 'Parameters', align: 'right', cell: (l) => l.parameters === undefined ? undefined : formatCount(l.parameters) },
  { head: 'Accuracy', align: 'right', cell: (l) => l.accuracy === undefined ? undefined : percent(l.accuracy) },
  { head: 'Running time (s)', align: 'right', cell: (l) => l.runningSeconds === undefined ? undefined : grouped(1)(l.runningSeconds) },
  { head: 'Train img/s', align: 'right', cell: (l) => l.trainImagesPerSecond === undefined ? undefined : grouped(1)(l.trainImagesPerSecond) },
  { head: 'Infer img/s', align: 'right', cell: (l) => l.inferImagesPerSecond === undefined ? undefined : grouped(1)(l.inferImagesPerSecond) },
  { head: 'Peak memory', align: 'right', cell: (l) => l.peakMemory === undefined ? undefined : l.peakMemory === null ? 'n/a' : formatBytes(l.peakMemory.bytes) },
  { head: 'GMACs/image', align: 'right', cell: (l) => l.macsPerImage === undefined ? undefined : fixed(l.macsPerImage / 1e9, 2) },
  { head: 'Acc. %/M params', align: 'right', cell: (l) => l.accuracyPerMillionParameters === undefined ? undefined : fixed(l.accuracyPerMillionParameters, 2) },
];

function ourLine(r: ComparisonRow): Line {
  return {
    label: r.label,
    reference: false,
    parameters: r.parameters,
    accuracy: r.testAccuracy,
    runningSeconds: r.trainingSeconds,
    trainImagesPerSecond: r.trainImagesPerSecond,
    inferImagesPerSecond: r.inferImagesPerSecond,
    peakMemory: r.peakMemory,
    macsPerImage: r.macsPerImage,
    accuracyPerMillionParameters: r.accuracyPerMillionParameters,
  };
}

function referenceLine(r: ReferenceResult): Line {
  return {
    label: r.label,
    reference: true,
    parameters: r.parameters,
    accuracy: r.testAccuracy,
    runningSeconds: r.trainingSeconds,
    trainImagesPerSecond: r.imagesPerSecond,
    accuracyPerMillionParameters: r.testAccuracy !== undefined && r.parameters !== undefined
      ? accuracyPerMillionParameters(r.testAccuracy, r.parameters) : undefined,
  };
}

/** The columns our runs have figures for; the reference rows fill in what they can. */
function layout(c: Comparison): { columns: Column[]; lines: Line[] } {
  const ours = c.rows.map(ourLine);
  const columns = COLUMNS.filter((col) => ours.some((l) => col.cell(l) !== undefined));
  return { columns, lines: [...ours, ...c.reference.map(referenceLine)] };
}

function notes(c: Comparison): string[] {
  const notes: string[] = [];
  if (c.mode === 'train') notes.push('Accuracy: test split, final weights. Running time: the training loop of all epochs (validation and test not included). Train img/s: training images per second over all epochs.');
  if (c.mode === 'throughput') notes.push('Images/s: training steps as the training loop runs them (forward, loss, backward, Adam) and eval-mode forward passes, on a fixed random batch.');
  const peak = c.rows.map((r) => r.peakMemory).find((p) => p);
  if (peak?.source === 'process resident set') {
    notes.push(`Peak memory: the process's peak resident set${peak.sinceProcessStart ? ' since it started (it could not be reset per run)' : ' during each run'}, Node.js and libtorch included.`);
  } else if (peak) {
    notes.push(`Peak memory: the ${peak.source}'s peak${peak.sinceProcessStart ? ' since the process started' : ''}.`);
  }
  else if (c.rows.some((r) => r.peakMemory === null)) notes.push('Peak memory: not available (the addon was built without CUDA memory statistics).');
  const size = c.rows[0]?.imageSize;
  notes.push(`GMACs/image: multiply-accumulates of one eval-mode forward pass of a ${size}x${size} image (convolutions and linear layers).`);
  if (c.reference.length) notes.push(`Reference rows: the ${REFERENCE_SETUP}; published figures, not measured here.`);
  return notes;
}

export function formatComparisonTable(c: Comparison): string {
  const { columns, lines } = layout(c);
  const table = new Table({ head: columns.map((col) => col.head), colAligns: columns.map((col) => col.align), style: { head: [], border: [], compact: true } });
  lines.forEach((line, i) => {
    // A rule between our runs and the reference rows.
    if (line.reference && !lines[i - 1]?.reference) table.push(columns.map(() => ''));
    table.push(columns.map((col) => col.cell(line) ?? ''));
  });
  return [`${c.title}: ${c.setup}`, table.toString(), ...notes(c)].join('\n');
}

const markdownCell = (text: string) => text.replace(/\|/g, '\\|');

export function formatComparisonMarkdown(c: Comparison): string {
  const { columns, lines } = layout(c);
  const row = (cells: string[]) => `| ${cells.map(markdownCell).join(' | ')} |`;
  const table = [
    row(columns.map((col) => col.head)),
    `|${columns.map((col) => (col.align === 'right' ? '---:' : '---')).join('|')}|`,
    ...lines.map((line) => row(columns.map((col) => {
      const cell = col.cell(line) ?? '';
      return line.reference && cell ? `*${cell}*` : cell;
    }))),
  ];
  const figures = c.figures.filter((f) => f.endsWith('.svg')).map((f) => `![${f}](${f})`);
  return [
    `# ${c.title}`,
    '',
    c.setup,
    '',
    ...table,
    '',
    ...notes(c).map((n) => `- ${n}`),
    '',
    `${c.runtime.device}, libtorch ${c.runtime.libtorch}, ${c.runtime.threads} threads; ${c.createdAt}.`,
    ...(figures.length ? ['', '## Figures', '', ...figures.flatMap((f) => [f, ''])] : ['']),
  ].join('\n');
}
