// The layer table printed by `xception-torch summary`, in the spirit of torchinfo.
import Table from 'cli-table3';
import type { LayerSummary } from '../models';

export const formatCount = (n: number): string => n.toLocaleString('en-US');

const formatShape = (shape: number[]): string => `[${shape.join(', ')}]`;

export interface SummaryTotals {
  title: string;
  imageSize: number;
  parameters: number;
}

export function formatSummaryTable(rows: LayerSummary[], totals: SummaryTotals): string {
  const table = new Table({
    head: ['Layer', 'Type', 'Output shape', 'Param #'],
    colAligns: ['left', 'left', 'left', 'right'],
    style: { head: [], border: [], compact: true },
  });
  for (const row of rows) table.push([row.name, row.type, formatShape(row.outputShape), formatCount(row.parameters)]);
  return [
    `${totals.title} — input [1, 3, ${totals.imageSize}, ${totals.imageSize}]`,
    table.toString(),
    `Total params: ${formatCount(totals.parameters)}`,
    `Trainable params: ${formatCount(totals.parameters)}`,
  ].join('\n');
}
