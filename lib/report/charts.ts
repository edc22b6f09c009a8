// The comparison's charts as Vega-Lite specs: training curves (one run, or several overlaid) and
// bars of what each run costs. lib/report/render-chart.ts turns a spec into SVG and PNG.
import type { TopLevelSpec } from 'vega-lite';
import type { EpochRecord } from '../run-files';

/** One run's per-epoch history, under the label the chart shows. */
export interface CurveSeries {
  label: string;
  epochs: readonly EpochRecord[];
}

export type Split = 'train' | 'validation';

/** One chart style for all figures; the font is the one render-chart.ts bundles for the PNG. */
const CONFIG = {
  font: 'DejaVu Sans, sans-serif',
  background: 'white',
  padding: 12,
  title: { fontSize: 15, anchor: 'start' as const, offset: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
};

/** The long form the curve charts plot: one point per run, epoch, split and metric. */
function curvePoints(series: readonly CurveSeries[], splits: readonly Split[]) {
  return series.flatMap((s) => s.epochs.flatMap((e) => splits.flatMap((split) => {
    const [loss, accuracy] = split === 'train' ? [e.trainLoss, e.trainAccuracy] : [e.valLoss, e.valAccuracy];
    return [
      { run: s.label, epoch: e.epoch, split, metric: 'loss', value: loss },
      { run: s.label, epoch: e.epoch, split, metric: 'accuracy', value: accuracy },
    ];
  })));
}

/**
 * Loss (log scale: early losses can be huge) and accuracy per epoch, side by side. One run: train
 * and validation in two colours. Several runs overlaid: a colour per run, and (with both splits)
 * validation solid, train dashed.
 */
export function curvesChart(series: readonly CurveSeries[], o: { title: string; splits?: readonly Split[] }): TopLevelSpec {
  const splits = o.splits ?? ['train', 'validation'];
  const epochs = Math.max(1, ...series.map((s) => s.epochs.length));
  const single = series.length === 1;
  const x = {
    field: 'epoch', type: 'quantitative', title: 'epoch',
    scale: { domain: epochs > 1 ? [1, epochs] : [0.5, 1.5] }, axis: { values: Array.from({ length: epochs }, (_, i) => i + 1), format: 'd' },
  };
  const color = single
    ? { field: 'split', type: 'nominal', title: 'split', sort: splits }
    : { field: 'run', type: 'nominal', title: 'run', sort: series.map((s) => s.label) };
  const dashed = !single && splits.length > 1;
  const panel = (metric: 'loss' | 'accuracy') => {
    const y = metric === 'loss'
      ? { field: 'value', type: 'quantitative', title: 'loss (log scale)', scale: { type: 'log' } }
      : { field: 'value', type: 'quantitative', title: 'accuracy', scale: { domain: [0, 1] }, axis: { format: '.0%' } };
    return {
      width: 300,
      height: 220,
      transform: [{ filter: { field: 'metric', equal: metric } }],
      layer: [
        {
          mark: { type: 'line', strokeWidth: 2 },
          encoding: {
            x, y, color, detail: { field: 'split', type: 'nominal' },
            ...(dashed ? { strokeDash: { field: 'split', type: 'nominal', title: 'split', sort: ['validation', 'train'], scale: { range: [[1, 0], [6, 3]] } } } : {}),
          },
        },
        // Points too, so that a single epoch still shows.
        { mark: { type: 'point', filled: true, size: 36 }, encoding: { x, y, color } },
      ],
    };
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: o.title,
    data: { values: curvePoints(series, splits) },
    hconcat: [panel('loss'), panel('accuracy')],
    config: CONFIG,
  } as TopLevelSpec;
}

/** One bar panel: a number per run, in the units and format shown. */
export interface BarMeasure {
  title: string;
  /** d3-format of the value labels, e.g. ',.2f'. */
  format: string;
  values: readonly number[];
}

/** Horizontal bars, one panel per measure (parameters, running time, images/s, ...), one bar per run. */
export function barsChart(labels: readonly string[], measures: readonly BarMeasure[], o: { title: string }): TopLevelSpec {
  const panel = (m: BarMeasure) => {
    const values = labels.map((run, i) => ({ run, value: m.values[i] }));
    const y = { field: 'run', type: 'nominal', title: null, sort: [...labels] };
    // Room right of the longest bar for its value label.
    const max = Math.max(0, ...m.values.filter(Number.isFinite));
    const x = { field: 'value', type: 'quantitative', scale: { domain: [0, max > 0 ? max * 1.3 : 1], nice: false } };
    return {
      width: 220,
      height: { step: 28 },
      data: { values },
      layer: [
        { mark: { type: 'bar' }, encoding: { y, x: { ...x, title: m.title }, color: { field: 'run', type: 'nominal', legend: null, sort: [...labels] } } },
        { mark: { type: 'text', align: 'left', dx: 4 }, encoding: { y, x, text: { field: 'value', type: 'quantitative', format: m.format } } },
      ],
    };
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: o.title,
    hconcat: measures.map(panel),
    config: CONFIG,
  } as TopLevelSpec;
}
