// Image decoding and the evaluation transform against PIL and torchvision (test/oracle/images.py):
// every kind of file torchvision's loader meets decodes to PIL's convert('RGB') bytes exactly, and
// the transform gives torchvision's tensor.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ImageDecodeError } from '../lib/errors';
import { decodeImage, RgbImage } from '../lib/images/decode';
import { applyEvalTransform, EvalTransform, evalBatch, resizeSize, shorterSideSize } from '../lib/images/eval-transform';
import { findImages } from '../lib/images/find-images';
import { PRESETS } from '../lib/images/presets';
import { resize } from '../lib/images/resample';
import { PYTHON, requirePythonTorch } from './helpers/python';

jest.setTimeout(120_000);

const ORACLE = path.join(__dirname, 'oracle', 'images.py');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'xt-images-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function images<T>(command: string, args: Record<string, string | number>): T {
  requirePythonTorch();
  const argv = [ORACLE, command, ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)])];
  const r = spawnSync(PYTHON, argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`images.py ${command} failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Made {
  images: Array<{ file: string; mode: string; width: number; height: number }>;
}

let made: Made;
beforeAll(() => {
  made = images<Made>('make', { dir: tmp });
});

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
};

// PIL's mode for each file: the kinds convert('RGB') handles differently.
const KINDS: Array<[string, string]> = [
  ['rgb.png', 'RGB'], ['rgb.jpg', 'RGB'], ['rgb444.jpg', 'RGB'], ['big.jpg', 'RGB'], ['l.png', 'L'], ['l.jpg', 'L'],
  ['1bit.png', '1'], ['rgba.png', 'RGBA'], ['la.png', 'LA'], ['p.png', 'P'], ['p-trns.png', 'P'], ['cmyk.jpg', 'CMYK'],
  ['cmyk-raw.jpg', 'CMYK'], ['exif-rotated.jpg', 'RGB'], ['i16.png', 'I'], ['rgb16.png', 'RGB'], ['rgba16.png', 'RGBA'],
];

describe('decodeImage', () => {
  it.each(KINDS)("%s (PIL mode %s) decodes to PIL's convert('RGB') bytes exactly", async (file, mode) => {
    const info = made.images.find((m) => m.file === file)!;
    expect(info.mode).toBe(mode);
    const image = await decodeImage(path.join(tmp, file));
    expect([image.width, image.height]).toEqual([info.width, info.height]);
    const want = fs.readFileSync(path.join(tmp, `${file}.rgb`));
    expect(maxAbsDiff(image.data, want)).toBe(0);
  });

  it('16-bit greyscale is clipped to 255 as PIL does, not scaled', async () => {
    const image = await decodeImage(path.join(tmp, 'i16.png'));
    // The first row holds 0, 1, 100, 254, 255, 256, 300, 65535.
    expect([...image.data.subarray(0, 24)].filter((_, i) => i % 3 === 0)).toEqual([0, 1, 100, 254, 255, 255, 255, 255]);
  });

  it('a file that cannot be decoded is an ImageDecodeError naming it', async () => {
    const cases: Record<string, Buffer | string> = {
      'text.jpg': 'not an image at all\n',
      'empty.png': Buffer.alloc(0),
      'truncated.jpg': fs.readFileSync(path.join(tmp, 'big.jpg')).subarray(0, 600),
      'truncated.png': fs.readFileSync(path.join(tmp, 'big.png')).subarray(0, 300),
      // A GIF: PIL reads it, but the decoder is for JPEG and PNG.
      'tiny.gif': Buffer.from('R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==', 'base64'),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      const file = path.join(tmp, 'bad', name);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, bytes);
      const error = await decodeImage(file).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ImageDecodeError);
      expect((error as ImageDecodeError).file).toBe(file);
      expect((error as Error).message).toContain(`cannot decode image ${file}: `);
      expect((error as Error).message).not.toContain('\n');
    }
    const missing = path.join(tmp, 'no-such.jpg');
    await expect(decodeImage(missing)).rejects.toThrow(`cannot decode image ${missing}: ENOENT`);
  });
});

describe('resize', () => {
  // Sizes that reduce, enlarge, and change one side only; both of PIL's filters torchvision uses.
  it.each([
    ['big.png', 113, 85, 'bilinear'], ['big.png', 40, 30, 'bicubic'], ['tall.png', 85, 157, 'bicubic'],
    ['rgb.png', 342, 235, 'bilinear'], ['rgb.png', 45, 90, 'bicubic'], ['tall.png', 33, 130, 'bilinear'],
  ] as const)("%s to %dx%d %s gives PIL's bytes exactly", async (file, width, height, filter) => {
    const image = await decodeImage(path.join(tmp, file));
    const out = path.join(tmp, `resized-${file}-${width}x${height}-${filter}.raw`);
    const py = spawnSync(PYTHON, ['-c', [
      'import sys, numpy as np', 'from PIL import Image',
      `im = Image.open(sys.argv[1]).convert('RGB').resize((${width}, ${height}), Image.${filter.toUpperCase()})`,
      'open(sys.argv[2], "wb").write(np.asarray(im).tobytes())',
    ].join('\n'), path.join(tmp, file), out], { encoding: 'utf8' });
    expect(py.stderr).toBe('');
    const ours = resize(image, width, height, filter);
    expect(maxAbsDiff(ours.data, fs.readFileSync(out))).toBe(0);
  });
});

describe('evaluation transform', () => {
  it("sizes: torchvision's Resize(int) and timm's floor(size / crop_pct)", () => {
    expect(shorterSideSize(500, 375, 342)).toEqual({ width: 456, height: 342 });
    expect(shorterSideSize(375, 500, 333)).toEqual({ width: 333, height: 444 });
    expect(resizeSize({ size: 224, mean: [0, 0, 0], std: [1, 1, 1] })).toBe(256);
    expect(resizeSize({ size: 299, cropPct: 0.8975, mean: [0, 0, 0], std: [1, 1, 1] })).toBe(333);
    expect(resizeSize(PRESETS['torchvision-inception_v3'].transform)).toBe(342);
    expect(resizeSize(PRESETS['timm-legacy_xception'].transform)).toBe(333);
    expect(Math.floor(299 / PRESETS['torchvision-inception_v3'].transform.cropPct!)).toBe(342);
  });

  const FILES = ['big.png', 'tall.png', 'rgb.jpg', 'big.jpg', 'cmyk.jpg', 'p-trns.png', 'i16.png'];
  const transforms: Array<[string, EvalTransform]> = [
    ['crop_pct 0.875, bilinear, ImageNet mean/std', { size: 64, cropPct: 0.875, interpolation: 'bilinear', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }],
    ["timm's Xception's, at 56", { ...PRESETS['timm-legacy_xception'].transform, size: 56, resize: undefined }],
    ['an odd crop with odd margins (CenterCrop rounds half to even)', { size: 37, resize: 40, interpolation: 'bicubic', mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4] }],
    ["torchvision's Inception V3's, at 299 (enlarging)", PRESETS['torchvision-inception_v3'].transform],
  ];
  it.each(transforms)("%s: torchvision's tensor (byte-exact resize: at most float32 rounding apart)", async (_name, t) => {
    const decoded: RgbImage[] = await Promise.all(FILES.map((f) => decodeImage(path.join(tmp, f))));
    const batch = evalBatch(decoded, t);
    expect(batch.shape).toEqual([FILES.length, 3, t.size, t.size]);
    const out = path.join(tmp, 'transform.f32');
    images('transform', {
      files: FILES.map((f) => path.join(tmp, f)).join(','), size: t.size, resize: resizeSize(t), interpolation: t.interpolation ?? 'bilinear',
      mean: t.mean.join(','), std: t.std.join(','), out,
    });
    const bytes = fs.readFileSync(out);
    const want = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    // One 8-bit level is 1 / 255 / std >= 0.0098 here; 1e-6 allows only float32 rounding of the
    // normalisation, so any pixel of the resize or the crop that differed would fail.
    expect(maxAbsDiff(batch.data, want)).toBeLessThanOrEqual(1e-6);
    // One image alone gives the same values as in the batch.
    expect(applyEvalTransform(decoded[1], t)).toEqual(batch.data.subarray(3 * t.size * t.size, 6 * t.size * t.size));
  });

  it('refuses a crop larger than its resize, and a crop_pct outside (0, 1]', () => {
    const image: RgbImage = { width: 4, height: 4, data: new Uint8Array(48) };
    expect(() => applyEvalTransform(image, { size: 8, resize: 6, mean: [0, 0, 0], std: [1, 1, 1] })).toThrow('the resize (6) must be an integer >= the crop size 8');
    expect(() => applyEvalTransform(image, { size: 8, cropPct: 1.2, mean: [0, 0, 0], std: [1, 1, 1] })).toThrow('crop_pct must be in (0, 1]');
  });
});

it('findImages walks folders (sorted, JPEG and PNG only) and keeps named files as they are', async () => {
  const root = path.join(tmp, 'walk');
  for (const f of ['b/2.png', 'b/1.JPG', 'a.jpeg', 'notes.txt', 'c/d/3.png']) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), '');
  }
  expect(await findImages([root, path.join(root, 'notes.txt')])).toEqual(
    ['a.jpeg', 'b/1.JPG', 'b/2.png', 'c/d/3.png', 'notes.txt'].map((f) => path.join(root, f)),
  );
  await expect(findImages([path.join(root, 'nothing')])).rejects.toThrow('does not exist');
  fs.mkdirSync(path.join(root, 'empty'));
  await expect(findImages([path.join(root, 'empty')])).rejects.toThrow('holds no .jpg, .jpeg, .png files');
});
