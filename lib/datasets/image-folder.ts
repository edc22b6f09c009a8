// Your own images in torchvision's ImageFolder layout: one sub-folder per class, classes and files
// in the order ImageFolder gives them (class folders sorted by name; each class's files as
// sorted(os.walk(class_dir, followlinks=True)) then sorted(file names) visit them). Splits: D/train
// with D/val (and D/test) when D/train exists, else D itself split by a seeded hold-out. Only the
// paths and labels are held: the pixels are read batch by batch (lib/datasets/folder-feeder.ts).
import * as fs from 'fs';
import * as path from 'path';
import { IMAGE_EXTENSIONS } from '../images/decode';
import { permutation } from '../random';

/** One split of an image folder: files and their class indices. */
export interface ImageFolderSplit {
  /** The folder the split was read from. */
  root: string;
  files: string[];
  /** The class index of each file (into the dataset's classNames). */
  labels: Int32Array;
}

export interface ImageFolderDataset {
  name: string;
  classNames: string[];
  train: ImageFolderSplit;
  val: ImageFolderSplit;
  /** D/test when there is one; else the validation split (said in `testIsVal`). */
  test: ImageFolderSplit;
  testIsVal: boolean;
  /** Files left out because the decoder does not read their kind (e.g. .bmp, .webp), by extension. */
  ignored: Record<string, number>;
}

/** How an image folder's files become training and evaluation crops (TrainerOptions.imageFolder). */
export interface ImageFolderOptions {
  /** Evaluation: the crop's share of the resized shorter side (timm's crop_pct). Default 0.875. */
  cropPct?: number;
  /** Evaluation: the shorter side before the centre crop, when given (else floor(size / cropPct)). */
  resize?: number | null;
  /** The resize filter. Default 'bilinear' (torchvision's). */
  interpolation?: 'bilinear' | 'bicubic';
  /** RandomResizedCrop's range of areas, as a share of the image. Default [0.08, 1]. */
  scale?: [number, number];
  /** RandomResizedCrop's range of aspect ratios (width / height). Default [3/4, 4/3]. */
  ratio?: [number, number];
  /** Batches decoded ahead of the training loop. Default 4. */
  prefetch?: number;
  /** Leave out (and report) files that cannot be decoded instead of stopping. Default false. */
  skipBadImages?: boolean;
  /**
   * Keep every image in memory after its first decode, resized so that its shorter side is the
   * evaluation resize (floor(size / crop_pct)); later epochs then neither read nor decode. Refused
   * when the splits would need more than half the free memory. Default false.
   */
  cacheImages?: boolean;
}

export const IMAGE_FOLDER_DEFAULTS: Readonly<Required<ImageFolderOptions>> = Object.freeze({
  cropPct: 0.875,
  resize: null,
  interpolation: 'bilinear',
  scale: [0.08, 1] as [number, number],
  ratio: [3 / 4, 4 / 3] as [number, number],
  prefetch: 4,
  skipBadImages: false,
  cacheImages: false,
});

/** The options with defaults filled in; a RangeError for a value that cannot work. */
export function resolveImageFolderOptions(o: ImageFolderOptions = {}): Required<ImageFolderOptions> {
  const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const r = { ...IMAGE_FOLDER_DEFAULTS, ...given } as Required<ImageFolderOptions>;
  if (!(r.cropPct > 0 && r.cropPct <= 1)) throw new RangeError(`cropPct must be in (0, 1]; got ${r.cropPct}`);
  if (r.interpolation !== 'bilinear' && r.interpolation !== 'bicubic') throw new RangeError(`interpolation must be 'bilinear' or 'bicubic'; got ${String(r.interpolation)}`);
  const range = (name: string, v: [number, number], max: number) => {
    if (!Array.isArray(v) || v.length !== 2 || !(v[0] > 0 && v[0] <= v[1] && v[1] <= max)) {
      throw new RangeError(`${name} must be [low, high] with 0 < low <= high <= ${max}; got ${JSON.stringify(v)}`);
    }
  };
  range('scale', r.scale, 1);
  range('ratio', r.ratio, 100);
  if (r.resize !== null && !(Number.isSafeInteger(r.resize) && r.resize >= 1)) throw new RangeError(`resize must be a positive integer; got ${r.resize}`);
  if (!Number.isSafeInteger(r.prefetch) || r.prefetch < 1) throw new RangeError(`prefetch must be a positive integer; got ${r.prefetch}`);
  if (typeof r.cacheImages !== 'boolean') throw new RangeError(`cacheImages must be true or false; got ${JSON.stringify(r.cacheImages)}`);
  if (typeof r.skipBadImages !== 'boolean') throw new RangeError(`skipBadImages must be true or false; got ${JSON.stringify(r.skipBadImages)}`);
  return r;
}

export interface LoadImageFolderOptions {
  /** Without D/train: images held out for validation. Default: a tenth of them (at least 1). */
  valSize?: number;
  /** Seed of that hold-out. Default 0. */
  seed?: number;
}

// The other extensions torchvision's IMG_EXTENSIONS lists: counted and reported, never read.
const OTHER_TORCHVISION_EXTENSIONS = ['.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'];

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

async function isDirectory(p: string): Promise<boolean> {
  return (await fs.promises.stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

/** The class folders of `root`, sorted (directories and links to them, as os.scandir's is_dir()). */
export async function findClasses(root: string): Promise<string[]> {
  const entries = await fs.promises.readdir(root, { withFileTypes: true });
  const classes: string[] = [];
  for (const e of entries) {
    if (e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(path.join(root, e.name))))) classes.push(e.name);
  }
  return classes.sort(byCodePoint);
}

// os.walk(top, followlinks=True) as a list of (folder, file names), sorted by folder path as
// sorted() sorts its tuples.
async function walk(top: string, out: Array<[string, string[]]>, seen: Set<string>): Promise<void> {
  const real = await fs.promises.realpath(top);
  if (seen.has(real)) return;  // a link back up the tree: Python would loop; we stop
  seen.add(real);
  const entries = await fs.promises.readdir(top, { withFileTypes: true });
  const files: string[] = [];
  const dirs: string[] = [];
  for (const e of entries) {
    const full = path.join(top, e.name);
    if (e.isDirectory() || (e.isSymbolicLink() && (await isDirectory(full)))) dirs.push(full);
    else files.push(e.name);
  }
  out.push([top, files]);
  for (const dir of dirs) await walk(dir, out, seen);
}

async function readSplit(root: string, classToIndex: Map<string, number>, ignored: Record<string, number>): Promise<ImageFolderSplit> {
  const files: string[] = [];
  const labels: number[] = [];
  const classes = await findClasses(root);
  for (const name of classes) {
    const index = classToIndex.get(name);
    if (index === undefined) {
      throw new Error(`${path.join(root, name)} is a class the training split does not have (it has ${[...classToIndex.keys()].join(', ')})`);
    }
    const folders: Array<[string, string[]]> = [];
    await walk(path.join(root, name), folders, new Set());
    folders.sort((a, b) => byCodePoint(a[0], b[0]));
    let found = 0;
    for (const [folder, names] of folders) {
      for (const file of names.sort(byCodePoint)) {
        const ext = path.extname(file).toLowerCase();
        if (IMAGE_EXTENSIONS.includes(ext)) {
          files.push(path.join(folder, file));
          labels.push(index);
          found++;
        } else if (OTHER_TORCHVISION_EXTENSIONS.includes(ext)) {
          ignored[ext] = (ignored[ext] ?? 0) + 1;
        }
      }
    }
    if (found === 0) throw new Error(`the class folder ${path.join(root, name)} holds no ${IMAGE_EXTENSIONS.join(', ')} files`);
  }
  return { root, files, labels: Int32Array.from(labels) };
}

/** The class names of an image folder (those of D/train when it exists), without reading its files. */
export async function imageFolderClasses(dir: string): Promise<string[]> {
  const root = path.resolve(dir);
  if (!(await isDirectory(root))) throw new Error(`--data-dir ${dir} is not a folder`);
  const train = path.join(root, 'train');
  return findClasses((await isDirectory(train)) ? train : root);
}

function subset(split: ImageFolderSplit, indices: ArrayLike<number>): ImageFolderSplit {
  const files = Array.from(indices, (i) => split.files[i]);
  return { root: split.root, files, labels: Int32Array.from(indices, (i) => split.labels[i]) };
}

/**
 * Reads the layout of an image folder (no pixels). Throws when `dir` is not a folder, holds no
 * class folders, a class folder holds no readable image, or a split has a class train lacks.
 */
export async function loadImageFolder(dir: string, opts: LoadImageFolderOptions = {}): Promise<ImageFolderDataset> {
  const root = path.resolve(dir);
  if (!(await isDirectory(root))) throw new Error(`--data-dir ${dir} is not a folder`);
  const split = async (name: string) => ((await isDirectory(path.join(root, name))) ? path.join(root, name) : undefined);
  const trainDir = await split('train');
  const top = trainDir ?? root;
  const classNames = await findClasses(top);
  if (classNames.length === 0) {
    throw new Error(`${top} holds no class folders: an image folder has one sub-folder of images per class (ImageFolder's layout)`);
  }
  const classToIndex = new Map(classNames.map((name, i) => [name, i]));
  const ignored: Record<string, number> = {};
  const all = await readSplit(top, classToIndex, ignored);
  const valDir = trainDir ? await split('val') : undefined;
  const testDir = trainDir ? await split('test') : undefined;
  let train = all;
  let val: ImageFolderSplit;
  if (valDir) {
    val = await readSplit(valDir, classToIndex, ignored);
  } else {
    const count = all.files.length;
    const valSize = opts.valSize ?? Math.max(1, Math.floor(count / 10));
    if (!Number.isSafeInteger(valSize) || valSize < 1 || valSize >= count) {
      throw new Error(`the validation hold-out must be from 1 to ${count - 1} images of the ${count} in ${top} (got ${valSize})`);
    }
    const order = permutation(count, opts.seed ?? 0);
    // Each part keeps the folder's order.
    val = subset(all, order.slice(0, valSize).sort());
    train = subset(all, order.slice(valSize).sort());
  }
  const test = testDir ? await readSplit(testDir, classToIndex, ignored) : val;
  return { name: path.basename(root), classNames, train, val, test, testIsVal: !testDir, ignored };
}
