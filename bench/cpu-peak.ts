// The CPU's peak fp32 FLOP rate, for the share of it each inference path of `npm run bench` reaches:
//   peak = cores used x clock x FMA units x fp32 lanes per vector x 2 (an FMA is two FLOPs).
// Lanes from /proc/cpuinfo's flags (avx512f: 16, avx2 + fma: 8). FMA units from the CPU's family: 2 for
// AVX-512 server cores unless the core is known to differ (AMD Zen 4 runs a 512-bit FMA on its two 256-bit
// pipes: one per cycle). The clock: a virtual machine reports no maximum, and its /proc/cpuinfo "cpu MHz"
// is the nominal clock, below the boost clock the cores run at (here 2596 MHz nominal, about 3300 run:
// with it, onnxruntime reached "106%" of the peak). So on x86-64 bench/cpu-peak-probe.c, built with the
// C compiler (cc, or $CC) at each run, times a chain of dependent adds on as many threads as the bench
// uses, at once, and the clock is the adds per CPU-second; the same probe's FMA loop checks the FMA units.
// Without a compiler: lscpu's or cpufreq's maximum clock, else the nominal one (flagged as such).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { median } from './stats';

export interface CpuPeak {
  model: string;
  /** The widest vector unit with FMA: avx512f (16 fp32 lanes), avx2 + fma (8), else SSE (4, no FMA). */
  isa: string;
  lanes: number;
  /** The clock the peak uses, in MHz, and where it comes from. */
  mhz: number;
  mhzSource: string;
  /** The clock the machine reports (lscpu or cpufreq maximum, else /proc/cpuinfo's), for comparison. */
  reportedMhz: number;
  reportedMhzSource: string;
  /** FMA instructions of `lanes` lanes issued per cycle per core. */
  fmaUnits: number;
  /** Why `fmaUnits` is what it is: evidence or assumption, printed next to the shares. */
  assumption: string;
  /** FLOPs per cycle per core: fmaUnits x lanes x 2. */
  flopsPerCycle: number;
  /** bench/cpu-peak-probe.c's figures per thread, when it ran. */
  probe: { threads: number; mhz: number[]; fmaGflops: number[] } | null;
}

/** Peak FLOP/s of `cores` cores. */
export function peakFlops(peak: CpuPeak, cores: number): number {
  return cores * peak.mhz * 1e6 * peak.flopsPerCycle;
}

/** "2 cores x 3300 MHz (…) x 1 FMA x 16 fp32 lanes (avx512f) x 2 = 211 GFLOP/s; …assumption…". */
export function describePeak(peak: CpuPeak, cores: number): string {
  const fmaPerCycle = peak.probe ? median(peak.probe.fmaGflops) / (peak.mhz / 1000) / (2 * peak.lanes) : null;
  return `${cores} core${cores === 1 ? '' : 's'} x ${peak.mhz.toFixed(0)} MHz (${peak.mhzSource}) x ${peak.fmaUnits} FMA x ${peak.lanes} fp32 lanes (${peak.isa}) x 2 = ` +
    `${(peakFlops(peak, cores) / 1e9).toFixed(0)} GFLOP/s; ${peak.assumption}` +
    (fmaPerCycle === null ? '' : `; the probe's FMA loop ran ${fmaPerCycle.toFixed(2)} ${peak.lanes}-lane FMAs per cycle per core (${median(peak.probe?.fmaGflops ?? []).toFixed(0)} GFLOP/s)`);
}

function cpuinfoFirstProcessor(): Map<string, string> | undefined {
  let text: string;
  try {
    text = fs.readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      if (fields.size) break;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return fields;
}

function reportedMaxMhz(): { mhz: number; source: string } | undefined {
  try {
    const khz = Number(fs.readFileSync('/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq', 'utf8').trim());
    if (khz > 0) return { mhz: khz / 1000, source: 'cpufreq maximum' };
  } catch {
    // no cpufreq (virtual machines)
  }
  const r = spawnSync('lscpu', [], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } });
  const line = r.status === 0 ? r.stdout.split('\n').find((l) => l.startsWith('CPU max MHz:')) : undefined;
  const mhz = line ? parseFloat(line.slice(line.indexOf(':') + 1)) : NaN;
  return mhz > 0 ? { mhz, source: 'lscpu max MHz' } : undefined;
}

/** Builds and runs bench/cpu-peak-probe.c on `threads` threads; null without a C compiler or off x86-64. */
function runProbe(isa: string, threads: number): CpuPeak['probe'] {
  if (process.arch !== 'x64' || (isa !== 'avx512f' && isa !== 'avx2')) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xception-torch-cpu-peak-'));
  try {
    const exe = path.join(dir, 'probe');
    const flags = isa === 'avx512f' ? ['-mavx512f', '-mfma'] : ['-mavx2', '-mfma'];
    const cc = spawnSync(process.env.CC || 'cc', ['-O2', '-pthread', ...flags, '-o', exe, path.join(__dirname, 'cpu-peak-probe.c')], { encoding: 'utf8' });
    if (cc.status !== 0) return null;
    const r = spawnSync(exe, [String(threads)], { encoding: 'utf8' });
    if (r.status !== 0) return null;
    const out = JSON.parse(r.stdout) as { mhz: number[]; fmaGflops: number[] };
    return { threads, mhz: out.mhz, fmaGflops: out.fmaGflops };
  } catch {
    return null;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The peak of this machine's CPU with `cores` cores busy, or undefined where /proc/cpuinfo cannot be read. */
export function cpuPeak(cores: number): CpuPeak | undefined {
  const info = cpuinfoFirstProcessor();
  if (!info) return undefined;
  const flags = new Set((info.get('flags') ?? '').split(/\s+/));
  const vendor = info.get('vendor_id') ?? '';
  const family = Number(info.get('cpu family'));
  const model = info.get('model name') ?? 'unknown CPU';
  let isa: string;
  let lanes: number;
  let fmaUnits: number;
  let assumption: string;
  if (flags.has('avx512f')) {
    isa = 'avx512f';
    lanes = 16;
    if (vendor === 'AuthenticAMD' && family === 0x19) {
      // Zen 4 (family 19h with AVX-512; Zen 3, also 19h, has none): two 256-bit FMA pipes, and a
      // 512-bit FMA occupies both, so one 16-lane FMA per cycle (32 fp32 FLOPs/cycle), the same as
      // two 8-lane AVX2 FMAs.
      fmaUnits = 1;
      assumption = 'AMD family 19h with AVX-512 is Zen 4, whose two 256-bit FMA pipes run one 512-bit FMA per cycle (the generic 2 x 512-bit assumption would double the peak and halve the shares)';
    } else {
      fmaUnits = 2;
      assumption = 'assumed 2 FMA units, as on AVX-512 server cores (some, e.g. Xeon Silver/Bronze, have 1)';
    }
  } else if (flags.has('avx2') && flags.has('fma')) {
    isa = 'avx2';
    lanes = 8;
    fmaUnits = 2;
    assumption = 'assumed 2 FMA units (Haswell and later, Zen 2 and later)';
  } else {
    isa = 'sse';
    lanes = 4;
    fmaUnits = 1;
    assumption = 'no FMA: one 4-lane multiply and one add per cycle assumed';
  }
  const reported = reportedMaxMhz() ?? { mhz: Number(info.get('cpu MHz')), source: '/proc/cpuinfo cpu MHz, nominal' };
  const probe = runProbe(isa, cores);
  const clock = probe
    ? { mhz: median(probe.mhz), source: `measured with ${cores} core${cores === 1 ? '' : 's'} busy; the machine reports ${reported.mhz.toFixed(0)} (${reported.source})` }
    : { mhz: reported.mhz, source: `${reported.source}${reported.source.endsWith('nominal') ? ': boost clocks make the shares too high' : ''}` };
  return {
    model, isa, lanes, mhz: clock.mhz, mhzSource: clock.source, reportedMhz: reported.mhz, reportedMhzSource: reported.source,
    fmaUnits, assumption, flopsPerCycle: fmaUnits * lanes * 2, probe,
  };
}
