// bench/cpu-peak.ts, which `npm run bench` divides each inference side's FLOP rate by: the formula and what it
// reads from this machine. No timing is asserted (the probe's clock and FMA rate vary with the machine's load).
import * as fs from 'fs';
import { cpuPeak, describePeak, peakFlops, CpuPeak } from '../bench/cpu-peak';

describe('the CPU peak FLOP rate (bench/cpu-peak.ts)', () => {
  it('peak = cores x clock x FMA units x lanes x 2', () => {
    const peak = { mhz: 3000, lanes: 16, fmaUnits: 2, flopsPerCycle: 64 } as CpuPeak;
    expect(peakFlops(peak, 2)).toBe(2 * 3000e6 * 2 * 16 * 2);
  });

  const linux = fs.existsSync('/proc/cpuinfo');
  (linux ? it : it.skip)('reads the vector width from the flags and states its clock and FMA assumption', () => {
    const peak = cpuPeak(1) as CpuPeak;
    const flags = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1].split(/\s+/) ?? [];
    expect(peak.lanes).toBe(flags.includes('avx512f') ? 16 : flags.includes('avx2') && flags.includes('fma') ? 8 : 4);
    expect(peak.flopsPerCycle).toBe(peak.fmaUnits * peak.lanes * 2);
    expect(peak.mhz).toBeGreaterThan(0);
    expect(peak.assumption).not.toBe('');
    if (peak.probe) {
      expect(peak.probe.mhz).toHaveLength(1);
      expect(peak.mhzSource).toMatch(/^measured with 1 core busy/);
    }
    expect(describePeak(peak, 1)).toMatch(/^1 core x \d+ MHz .* = \d+ GFLOP\/s; /);
  });
});
