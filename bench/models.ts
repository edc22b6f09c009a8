// Model benchmark: training-step and inference images/s of Xception and Inception V3 (fp32, CPU)
// against PyTorch eager in Python and, for inference, onnxruntime-node, on the same machine, in the same
// run, with the same threads, batch and image size. Each measurement runs in a process of its own (peak
// RSS is per side); medians over the repeats. PyTorch side: bench/model_reference.py with
// /usr/bin/python3, twice a repeat: NCHW (PyTorch's default) and channels-last (the layout ours runs in;
// faster for PyTorch too on some models), each with its ratio and one against the faster.
// onnxruntime side: bench/onnx_export.py exports the PyTorch side's model (same seed, same weights) to ONNX, bench/onnx-side.ts checks its logits against PyTorch's once (a mismatch is
// reported instead of a speed) and times session.run(). Each side reports the share of the CPUs other
// processes took during its timed steps; a measurement above --max-interference percent is run again
// once the machine is idle (bench/interference.ts), up to --retries times. Inference rows also give the
// share of the CPU's peak fp32 FLOP rate each side reaches (bench/cpu-peak.ts; FLOPs = 2 x the MACs of
// model.summary()).
//
//   npm run bench -- [--models xception,inception_v3] [--modes train,infer] [--size 96] [--batch 8]
//                    [--steps 5] [--warmup 2] [--infer-steps 30] [--infer-warmup 5] [--repeats 3] [--threads N] [--opset 13]
//                    [--max-interference 5] [--retries 5] [--note TEXT] [--out FILE] [--no-record]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { createModel, ModelName } from '../lib/models';
import { runtimeInfo } from '../lib/runtime';
import { cpuPeak, describePeak, peakFlops } from './cpu-peak';
import { InterferenceGuard, measureGuarded, Measurement } from './measure';
import type { OnnxCheck } from './onnx-side';
import { median } from './stats';

const PYTHON = process.env.XCEPTION_TORCH_PYTHON ?? '/usr/bin/python3';
const MODELS: ModelName[] = ['xception', 'inception_v3'];
const MODES = ['train', 'infer'] as const;
type Mode = (typeof MODES)[number];

interface Row {
  model: ModelName;
  mode: Mode;
  oursImagesPerSecond: number;
  pytorchImagesPerSecond: number;
  /** PyTorch with the model and batch in torch.channels_last, the layout ours runs in. */
  pytorchChannelsLastImagesPerSecond: number;
  /** null: not an inference row, or onnxruntime's logits did not match PyTorch's (see onnxCheck). */
  onnxruntimeImagesPerSecond: number | null;
  oursPeakRssMb: number;
  pytorchPeakRssMb: number;
  onnxruntimePeakRssMb: number | null;
  /** The most any kept measurement was disturbed by other processes (share of the CPUs). */
  maxOthersShare: number;
  ratio: number;
  ratioChannelsLast: number;
  /** Against the faster of PyTorch's two layouts. */
  ratioToFasterPytorch: number;
  oursOverOnnxruntime: number | null;
  onnxCheck: OnnxCheck | null;
  /** Inference: 2 x multiply-accumulates per image (model.summary()), and the share of the peak FLOP rate. */
  flopsPerImage: number | null;
  peakShare: { ours: number; pytorch: number; onnxruntime: number | null } | null;
}

/** Runs a helper process and parses the JSON line it prints last. */
function runJson<T>(command: string, args: string[], label: string): T {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${label} failed (exit ${r.status ?? r.signal}):\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as T;
}

/** Multiply-accumulates of one image, as model.summary() counts them (convolutions and linear layers). */
async function macsPerImage(model: ModelName, size: number): Promise<number> {
  const net = createModel(model, model === 'inception_v3' ? { numClasses: 10, auxLogits: false } : { numClasses: 10 });
  try {
    net.eval();
    return (await net.summary(size)).macs;
  } finally {
    net.dispose();
  }
}

function list<T extends string>(value: string, allowed: readonly T[], what: string): T[] {
  const items = value.split(',').map((v) => v.trim()).filter(Boolean);
  for (const v of items) if (!allowed.includes(v as T)) throw new Error(`unknown ${what} ${v}; use ${allowed.join(', ')}`);
  return items as T[];
}

function onnxruntimeVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

async function main(): Promise<void> {
  const opts = new Command('bench')
    .option('--models <list>', 'models, comma-separated', MODELS.join(','))
    .option('--modes <list>', 'train (training step) and/or infer (inference), comma-separated', MODES.join(','))
    .option('--size <n>', 'image size', (v) => parseInt(v, 10), 96)
    .option('--batch <n>', 'batch size', (v) => parseInt(v, 10), 8)
    .option('--warmup <n>', 'untimed training steps first', (v) => parseInt(v, 10), 2)
    .option('--steps <n>', 'timed training steps', (v) => parseInt(v, 10), 5)
    // Inference passes are 10-50x shorter than training steps: 5 of them were 0.1-0.2 s of timing, where one
    // hiccup of this shared machine moved a side by 10-20%.
    .option('--infer-warmup <n>', 'untimed inference passes first', (v) => parseInt(v, 10), 5)
    .option('--infer-steps <n>', 'timed inference passes', (v) => parseInt(v, 10), 30)
    .option('--repeats <n>', 'measurements of each side; medians are reported', (v) => parseInt(v, 10), 3)
    .option('--threads <n>', 'CPU threads for every side', (v) => parseInt(v, 10), os.cpus().length)
    .option('--opset <n>', 'ONNX opset of the exported model (13 or 17)', (v) => parseInt(v, 10), 13)
    .option('--max-interference <percent>', 'rerun a measurement when other processes took more of the CPUs', (v) => parseFloat(v), 5)
    .option('--retries <n>', 'reruns of a disturbed measurement at most', (v) => parseInt(v, 10), 5)
    .option('--note <text>', 'a caveat recorded with the results (e.g. the machine was not quiet)')
    .option('--out <file>', 'write the results as JSON')
    .option('--no-record', 'do not append the results to bench/RESULTS.md')
    .parse(process.argv)
    .opts();
  const models = list(String(opts.models), MODELS, 'model');
  const modes = list(String(opts.modes), MODES, 'mode');
  const [size, batch, threads] = [String(opts.size), String(opts.batch), String(opts.threads)];
  const guard: InterferenceGuard = { maxShare: opts.maxInterference / 100, retries: opts.retries };
  const peak = cpuPeak(opts.threads);
  const peakRate = peak ? peakFlops(peak, opts.threads) : null;
  const tsNode = (script: string, ...args: string[]) => ['-r', 'ts-node/register', path.join(__dirname, script), ...args];
  const exportDir = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-bench-onnx-'));
  const rows: Row[] = [];
  try {
    for (const model of models) {
      for (const mode of modes) {
        // onnxruntime: export the PyTorch side's model, check its logits once, then time it.
        let onnx: { file: string; check: OnnxCheck } | null = null;
        if (mode === 'infer') {
          const exported = runJson<{ onnx: string; input: string; logits: string }>(PYTHON, [path.join(__dirname, 'onnx_export.py'), '--model', model,
            '--size', size, '--batch', batch, '--opset', String(opts.opset), '--threads', threads, '--out', exportDir], `ONNX export of ${model}`);
          const check = runJson<OnnxCheck>(process.execPath, tsNode('onnx-side.ts', 'check', exported.onnx, exported.input, exported.logits, size, batch, threads),
            `onnxruntime check of ${model}`);
          console.error(`${model}: onnxruntime's logits vs PyTorch's: max relative error ${check.maxRelativeError.toExponential(1)} ` +
            `(tolerance ${check.tolerance.toExponential(0)}) — ${check.ok ? 'match' : 'MISMATCH, onnxruntime not timed'}`);
          onnx = { file: exported.onnx, check };
        }
        const [warmup, steps] = mode === 'infer' ? [String(opts.inferWarmup), String(opts.inferSteps)] : [String(opts.warmup), String(opts.steps)];
        const common = [size, batch, warmup, steps, threads];
        const ours: Measurement[] = [];
        const torch: Measurement[] = [];
        const torchChannelsLast: Measurement[] = [];
        const ort: Measurement[] = [];
        const reference = [path.join(__dirname, 'model_reference.py'), '--model', model, '--mode', mode, '--size', size,
          '--batch', batch, '--warmup', warmup, '--steps', steps, '--threads', threads];
        for (let r = 0; r < opts.repeats; r++) {
          ours.push(await measureGuarded(process.execPath, tsNode('model-step.ts', model, mode, ...common), `ours ${model} ${mode}`, guard));
          // PyTorch in its default NCHW and in channels-last, the layout ours runs in (faster for PyTorch too on some models).
          torch.push(await measureGuarded(PYTHON, reference, `PyTorch ${model} ${mode}`, guard));
          torchChannelsLast.push(await measureGuarded(PYTHON, [...reference, '--channels-last'], `PyTorch ${model} ${mode} channels-last`, guard));
          if (onnx?.check.ok) {
            ort.push(await measureGuarded(process.execPath, tsNode('onnx-side.ts', 'time', onnx.file, ...common), `onnxruntime ${model}`, guard));
          }
          console.error(`${model} ${mode} run ${r + 1}: ours ${ours[r].imagesPerSecond.toFixed(2)} img/s, PyTorch ${torch[r].imagesPerSecond.toFixed(2)} img/s, ` +
            `PyTorch channels-last ${torchChannelsLast[r].imagesPerSecond.toFixed(2)} img/s` +
            (ort[r] ? `, onnxruntime ${ort[r].imagesPerSecond.toFixed(2)} img/s` : ''));
        }
        const oursIps = median(ours.map((m) => m.imagesPerSecond));
        const torchIps = median(torch.map((m) => m.imagesPerSecond));
        const torchChannelsLastIps = median(torchChannelsLast.map((m) => m.imagesPerSecond));
        const ortIps = ort.length ? median(ort.map((m) => m.imagesPerSecond)) : null;
        const flopsPerImage = mode === 'infer' ? 2 * await macsPerImage(model, opts.size) : null;
        const share = (ips: number) => (flopsPerImage !== null && peakRate ? (ips * flopsPerImage) / peakRate : NaN);
        rows.push({
          model, mode,
          oursImagesPerSecond: oursIps,
          pytorchImagesPerSecond: torchIps,
          pytorchChannelsLastImagesPerSecond: torchChannelsLastIps,
          onnxruntimeImagesPerSecond: ortIps,
          oursPeakRssMb: median(ours.map((m) => m.peakRssMb ?? 0)),
          pytorchPeakRssMb: median(torch.map((m) => m.peakRssMb ?? 0)),
          onnxruntimePeakRssMb: ort.length ? median(ort.map((m) => m.peakRssMb ?? 0)) : null,
          maxOthersShare: Math.max(0, ...[...ours, ...torch, ...torchChannelsLast, ...ort].map((m) => m.othersShare ?? 0)),
          ratio: oursIps / torchIps,
          ratioChannelsLast: oursIps / torchChannelsLastIps,
          ratioToFasterPytorch: oursIps / Math.max(torchIps, torchChannelsLastIps),
          oursOverOnnxruntime: ortIps === null ? null : oursIps / ortIps,
          onnxCheck: onnx?.check ?? null,
          flopsPerImage,
          peakShare: mode === 'infer' ? {
            ours: share(oursIps), pytorch: share(Math.max(torchIps, torchChannelsLastIps)), onnxruntime: ortIps === null ? null : share(ortIps),
          } : null,
        });
      }
    }
  } finally {
    fs.rmSync(exportDir, { recursive: true, force: true });
  }
  const result = {
    date: new Date().toISOString().slice(0, 10),
    machine: `${peak?.model ?? os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} cores`,
    libtorch: runtimeInfo().libtorchVersion,
    onnxruntime: onnxruntimeVersion(),
    command: benchCommand(process.argv.slice(2)),
    settings: {
      size: opts.size, batch: opts.batch, warmup: opts.warmup, steps: opts.steps, inferWarmup: opts.inferWarmup, inferSteps: opts.inferSteps, repeats: opts.repeats, threads: opts.threads, opset: opts.opset,
      precision: 'fp32', maxInterferencePercent: opts.maxInterference, retries: opts.retries,
    },
    peak: peak ? { ...peak, cores: opts.threads, flopsPerSecond: peakRate, description: describePeak(peak, opts.threads) } : null,
    note: opts.note ?? null,
    rows,
  };
  const lines = table(rows);
  const peakLine = peak ? `Peak fp32 FLOP rate: ${describePeak(peak, opts.threads)}.` : 'Peak FLOP rate: unknown (no /proc/cpuinfo).';
  console.log([...lines, '', peakLine].join('\n'));
  if (opts.out) fs.writeFileSync(opts.out, JSON.stringify(result, null, 2) + '\n');
  if (opts.record) {
    const file = path.join(__dirname, 'RESULTS.md');
    const entry = `\n### ${result.date}: ours, PyTorch eager and onnxruntime, ${opts.size}x${opts.size}, batch ${opts.batch}, ${opts.threads} thread${opts.threads === 1 ? '' : 's'}\n\n` +
      `Machine: ${result.machine}, libtorch ${result.libtorch}, onnxruntime-node ${result.onnxruntime} (ONNX opset ${opts.opset}). ` +
      `Command: \`${result.command}\` (training: warm-up ${opts.warmup}, ${opts.steps} timed steps; inference: warm-up ${opts.inferWarmup}, ${opts.inferSteps} timed passes; medians of ${opts.repeats}).\n` +
      `${peakLine} Shares of it: images/s x 2 x MACs per image (model.summary()) over the peak.\n` +
      (result.note ? `\nCaveat: ${result.note}\n` : '') + '\n' + lines.join('\n') + '\n';
    fs.writeFileSync(file, insertIntoModelsSection(fs.readFileSync(file, 'utf8'), entry));
    console.error(`appended to ${file}`);
  }
}

/** The command line as run, less --note (recorded as the caveat) and --out (a local path). */
function benchCommand(args: string[]): string {
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--note' || args[i] === '--out') i++;
    else if (!args[i].startsWith('--note=') && !args[i].startsWith('--out=')) kept.push(/\s/.test(args[i]) ? JSON.stringify(args[i]) : args[i]);
  }
  return `npm run bench${kept.length ? ` -- ${kept.join(' ')}` : ''}`;
}

function table(rows: Row[]): string[] {
  const pct = (s: number | null | undefined) => (s === null || s === undefined || Number.isNaN(s) ? '—' : `${(100 * s).toFixed(0)}%`);
  const ort = (r: Row) => {
    if (r.onnxCheck && !r.onnxCheck.ok) {
      return `mismatch: logits off by ${r.onnxCheck.maxRelativeError.toExponential(1)} relative (tolerance ${r.onnxCheck.tolerance.toExponential(0)})`;
    }
    return r.onnxruntimeImagesPerSecond === null ? '—' : r.onnxruntimeImagesPerSecond.toFixed(2);
  };
  return [
    '| model | step | ours img/s | PyTorch img/s, NCHW / channels-last | onnxruntime img/s | ours / PyTorch, NCHW / channels-last | ours / faster PyTorch | ours / onnxruntime | GFLOP per image | share of peak FLOP rate, ours / faster PyTorch / onnxruntime | peak RSS ours / PyTorch NCHW / onnxruntime (MB) | others\' CPU share (max) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.model} | ${r.mode === 'train' ? 'training' : 'inference (model.forward from JS)'} | ${r.oursImagesPerSecond.toFixed(2)} | ` +
      `${r.pytorchImagesPerSecond.toFixed(2)} / ${r.pytorchChannelsLastImagesPerSecond.toFixed(2)} | ${ort(r)} | ${r.ratio.toFixed(2)} / ${r.ratioChannelsLast.toFixed(2)} | ` +
      `${r.ratioToFasterPytorch.toFixed(2)} | ${r.oursOverOnnxruntime === null ? '—' : r.oursOverOnnxruntime.toFixed(2)} | ` +
      `${r.flopsPerImage === null ? '—' : (r.flopsPerImage / 1e9).toFixed(2)} | ` +
      `${r.peakShare ? `${pct(r.peakShare.ours)} / ${pct(r.peakShare.pytorch)} / ${pct(r.peakShare.onnxruntime)}` : '—'} | ` +
      `${r.oursPeakRssMb.toFixed(0)} / ${r.pytorchPeakRssMb.toFixed(0)} / ${r.onnxruntimePeakRssMb === null ? '—' : r.onnxruntimePeakRssMb.toFixed(0)} | ${pct(r.maxOthersShare)} |`),
  ];
}

const MODELS_HEADING = '## Models (`npm run bench`)';

/** The entry at the end of the Models section (before the next `## ` heading), the section made if missing. */
function insertIntoModelsSection(text: string, entry: string): string {
  let start = text.indexOf(MODELS_HEADING);
  if (start < 0) {
    text = text.replace(/\n*$/, '\n') + `\n${MODELS_HEADING}\n\nfp32 on the CPU, a fixed random batch, each measurement in its own process. Training step: forward,
cross-entropy, backward, Adam. Inference: eval-mode forward (inference mode on both sides; ours folds BatchNorm
into the convolutions and runs channels-last; onnxruntime runs the PyTorch side's model exported to ONNX).
PyTorch: torchvision's Inception V3 (no aux head) and test/oracle/xception.py, eager, in \`/usr/bin/python3\`.
Measurements disturbed by other processes are repeated.\n`;
    start = text.indexOf(MODELS_HEADING);
  }
  const next = text.indexOf('\n## ', start + MODELS_HEADING.length);
  if (next < 0) return text.replace(/\n*$/, '\n') + entry;
  return text.slice(0, next).replace(/\n*$/, '\n') + entry + text.slice(next);
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
