// The PyTorch reader's bounds on an untrusted file (see pth.ts), and the quoting of the file's own
// text in its messages: every size, count and offset is checked against PTH_LIMITS before it is used.
import { constants as bufferConstants } from 'buffer';

/** What the reader accepts; beyond these a file is refused rather than read. */
export const PTH_LIMITS = Object.freeze({
  /** Entries in the zip (a state dict of n tensors has about n + 3). */
  zipEntries: 200_000,
  /** Bytes of data.pkl (a state dict's pickle takes about 100 bytes per tensor). */
  pickleBytes: 64 * 1024 * 1024,
  /** Tensors in the state dict. */
  tensors: 100_000,
  /** Dimensions of one tensor. */
  dims: 32,
  /** Bytes of one storage or tensor (Node's largest buffer). */
  tensorBytes: bufferConstants.MAX_LENGTH,
  /** A compressed entry may unpack to at most this many times its size (PyTorch writes them uncompressed). */
  inflateRatio: 16,
  /** Characters of a GLOBAL's module or name. */
  globalName: 256,
  /** Objects the pickle may handle (tuples, lists, dicts, tensors), values on its stack, open MARKs, memo entries. */
  containers: 2_000_000,
  stack: 100_000,
  marks: 1_000,
  memo: 4_000_000,
});

const MAX_QUOTED = 80;

/** The text cut to `max` characters, an ellipsis marking the cut. */
export function clip(text: string, max = MAX_QUOTED): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The text clipped and in single quotes, as the messages show the file's names and keys. */
export function quote(text: string): string {
  return `'${clip(text)}'`;
}
