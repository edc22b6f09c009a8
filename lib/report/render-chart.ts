// Vega-Lite spec -> SVG (Vega, headless: no browser, no canvas) -> PNG (resvg). The PNG's text uses
// the DejaVu Sans files of the dejavu-fonts-ttf package, so it renders the same with or without
// system fonts.
import { Resvg } from '@resvg/resvg-js';
import * as path from 'path';
import * as vega from 'vega';
import { compile, TopLevelSpec } from 'vega-lite';
import { writeFileAtomic } from '../atomic-write';

const FONT_DIR = path.join(path.dirname(require.resolve('dejavu-fonts-ttf/package.json')), 'ttf');
const FONT_FILES = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf'].map((f) => path.join(FONT_DIR, f));

/** The chart as an SVG document. */
export async function chartToSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** An SVG document as a PNG, at `scale` times its size (2: sharp on high-density screens). */
export function svgToPng(svg: string, scale = 2): Buffer {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: scale },
    font: { loadSystemFonts: false, fontFiles: FONT_FILES, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
  });
  return resvg.render().asPng();
}

/** Writes `<base>.svg` and `<base>.png`; returns their paths. */
export async function writeChart(spec: TopLevelSpec, base: string): Promise<[string, string]> {
  const svg = await chartToSvg(spec);
  const [svgFile, pngFile] = [`${base}.svg`, `${base}.png`];
  await writeFileAtomic(svgFile, svg);
  await writeFileAtomic(pngFile, svgToPng(svg));
  return [svgFile, pngFile];
}
