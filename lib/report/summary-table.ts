// The layer table printed by `xception-torch summary`, in the spirit of torchinfo.
import Table from 'cli-table3';
import type { LayerSummary } from '../models';

export const formatCount = (n: number): string => n.toLocaleString('en-US');

/** 8.36 G, 412.5 M, 20.5 K: multiply-accumulates at a glance. */
export function formatMacs(n: number): string {
  for (const [unit, size] of [['G', 1e9], ['M', 1e6], ['K', 1e3]] as const) {
    if (n >= size) return `${(n / size).toFixed(2)} ${unit}`;
  }
  return String(n);
}

const formatShape = (shape: number[]): string => `[${shape.join(', ')}]`;

export interface SummaryTotals {
  title: string;
  imageSize: number;
  parameters: number;
  macs: number;
}

export function formatSummaryTable(rows: LayerSummary[], totals: SummaryTotals): string {
  const table = new Table({
    head: ['Layer', 'Type', 'Output shape', 'Param #', 'MACs'],
    colAligns: ['left', 'left', 'left', 'right', 'right'],
    style: { head: [], border: [], compact: true },
  });
  for (const row of rows) {
    const name = row.trainingOnly ? `${row.name} (training only)` : row.name;
    table.push([name, row.type, formatShape(row.outputShape), formatCount(row.parameters), formatMacs(row.macs)]);
  }
  return [
    `${totals.title} — input [1, 3, ${totals.imageSize}, ${totals.imageSize}]`,
    table.toString(),
    `Total params: ${formatCount(totals.parameters)}`,
    `Trainable params: ${formatCount(totals.parameters)}`,
    `Multiply-accumulates per image (eval): ${formatMacs(totals.macs)} (${formatCount(totals.macs)})`,
  ].join('\n');
}
