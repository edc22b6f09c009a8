// Telling PyTorch's file formats apart by their first bytes: the zip torch.save writes since PyTorch
// 1.6, and the legacy format before it (a bare pickle, or a tar), which only Python reads, with the
// command that converts a legacy file once.

const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];
const EMPTY_ZIP_MAGIC = [0x50, 0x4b, 0x05, 0x06];
// A legacy torch.save file is a pickle (protocol 2) whose first value is this magic number.
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

const startsWith = (bytes: Uint8Array, magic: number[]): boolean =>
  bytes.byteLength >= magic.length && magic.every((b, i) => bytes[i] === b);

/** Whether the bytes are a zip (what torch.save writes since PyTorch 1.6). */
export function isZip(bytes: Uint8Array): boolean {
  return startsWith(bytes, ZIP_MAGIC) || startsWith(bytes, EMPTY_ZIP_MAGIC);
}

/** Whether bytes that are not a zip look like PyTorch's legacy format: its pickle, any pickle, or a tar. */
export function isLegacyPth(bytes: Uint8Array): boolean {
  const tar = bytes.byteLength > 262 && new TextDecoder('latin1').decode(bytes.subarray(257, 262)) === 'ustar';
  return startsWith(bytes, LEGACY_MAGIC) || bytes[0] === 0x80 || tar;
}

/** The one-line Python command that rewrites a legacy file in the zip format. */
export function conversionCommand(file: string): string {
  const safe = /^[\w./+@-]+$/.test(file) && !file.startsWith('-');
  const from = safe ? file : 'old.pth';
  const to = safe ? from.replace(/(\.[^./]*)?$/, (ext) => `-zip${ext || '.pth'}`) : 'new.pth';
  return `python3 -c "import torch; torch.save(torch.load('${from}', map_location='cpu'), '${to}')"`;
}
