// CIFAR-10's binary files (see cifar10.ts): a batch is records of one label byte and a 32×32 RGB image
// (3,072 bytes, channel after channel), any number of them; batches.meta.txt names the 10 classes.
import { ImageSet } from './types';

export const CIFAR10_CLASSES = 10;
/** One image: 3 channels of 32×32 bytes. */
export const CIFAR10_IMAGE_BYTES = 3 * 32 * 32;
/** One record: a label byte, then the image. */
export const CIFAR10_RECORD_BYTES = 1 + CIFAR10_IMAGE_BYTES;

/** Parses one CIFAR-10 batch file: records of 1 label byte + 3,072 image bytes, any number of them. */
export function parseCifar10Batch(bytes: Uint8Array, file: string): ImageSet {
  const size = bytes.length;
  if (size % CIFAR10_RECORD_BYTES !== 0) {
    const whole = Math.floor(size / CIFAR10_RECORD_BYTES);
    throw new Error(
      `${file}: size ${size} bytes is not a multiple of the CIFAR-10 record size ${CIFAR10_RECORD_BYTES} ` +
        `(1 label byte + ${CIFAR10_IMAGE_BYTES} image bytes): ${whole} whole records and ` +
        `${size - whole * CIFAR10_RECORD_BYTES} bytes left over. The file is truncated or not a CIFAR-10 binary batch.`,
    );
  }
  const count = size / CIFAR10_RECORD_BYTES;
  const images = new Uint8Array(count * CIFAR10_IMAGE_BYTES);
  const labels = new Uint8Array(count);
  for (let i = 0, at = 0; i < count; i++, at += CIFAR10_RECORD_BYTES) {
    const label = bytes[at];
    if (label >= CIFAR10_CLASSES) {
      throw new Error(
        `${file}: record ${i} (byte offset ${at}) has label ${label}; CIFAR-10 labels are 0 to ${CIFAR10_CLASSES - 1}.`,
      );
    }
    labels[i] = label;
    images.set(bytes.subarray(at + 1, at + CIFAR10_RECORD_BYTES), i * CIFAR10_IMAGE_BYTES);
  }
  return { images, labels, count, channels: 3, height: 32, width: 32 };
}

/** Class names from `batches.meta.txt`: its non-empty lines. */
export function parseCifar10Meta(text: string, file: string): string[] {
  const names = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  if (names.length !== CIFAR10_CLASSES) {
    throw new Error(`${file}: expected ${CIFAR10_CLASSES} class names (one a line), found ${names.length}`);
  }
  return names;
}
