// The report of `xception-torch evaluate`: loss and accuracy, per-class accuracy and the confusion
// matrix as tables.
import Table from 'cli-table3';
import type { EvalResult } from '../trainer';
import { fixed } from './format';

export interface EvaluationReport extends Omit<EvalResult, 'perClassAccuracy'> {
  checkpoint: string;
  /** Epochs the checkpoint had completed. */
  epoch: number;
  model: string;
  dataset: string;
  perClassAccuracy: Record<string, number>;
}

const style = { head: [], border: [], compact: true };

export function formatEvaluation(r: EvaluationReport): string {
  const perClass = new Table({ head: ['#', 'Class', 'Images', 'Accuracy'], colAligns: ['right', 'left', 'right', 'right'], style });
  r.classNames.forEach((name, i) => {
    const images = r.confusion[i]?.reduce((a, b) => a + b, 0) ?? 0;
    perClass.push([i, name, images, fixed(r.perClassAccuracy[name], 4)]);
  });
  // Columns are predictions, numbered like the rows (class names would make the table too wide).
  const columns = r.confusion[0]?.length ?? 0;
  const confusion = new Table({
    head: ['true \\ predicted', ...Array.from({ length: columns }, (_, j) => String(j))],
    colAligns: ['left', ...Array.from({ length: columns }, () => 'right' as const)],
    style,
  });
  r.classNames.forEach((name, i) => confusion.push([`${i} ${name}`, ...r.confusion[i].map(String)]));
  return [
    `${r.model} on ${r.dataset}, ${r.split} split (${r.images} images), checkpoint ${r.checkpoint} (epoch ${r.epoch})`,
    `loss ${fixed(r.loss, 4)}  accuracy ${fixed(r.accuracy, 4)}`,
    '',
    'Per-class accuracy',
    perClass.toString(),
    '',
    'Confusion matrix (rows: true class, columns: predicted class)',
    confusion.toString(),
  ].join('\n');
}
