// The official libtorch builds the search downloads: one pinned build (URL and sha256) per variant,
// and the choice of the one to use (the variant nvidia-smi or XCEPTION_TORCH_VARIANT picks, or a
// mirror's URL and checksum from the environment).
import type { CommandResult } from './run-command';

export type LibtorchVariant = 'cpu' | 'cuda';

export interface LibtorchPin {
  version: string;
  variant: LibtorchVariant;
  url: string;
  sha256: string;
}

/** Pinned official cxx11-ABI builds. */
export const LIBTORCH_PINS: Readonly<Record<LibtorchVariant, LibtorchPin>> = {
  cpu: {
    version: '2.5.1',
    variant: 'cpu',
    url: 'https://download.pytorch.org/libtorch/cpu/libtorch-cxx11-abi-shared-with-deps-2.5.1%2Bcpu.zip',
    sha256: '618ca54eef82a1dca46ff1993d5807d9c0deb0bae147da4974166a147cb562fa',
  },
  // CUDA 13.0 (cxx11 ABI, as every build from 2.7 on); its checksum is the one nixpkgs records for
  // this archive (libtorch-bin's binary-hashes.nix).
  cuda: {
    version: '2.9.0',
    variant: 'cuda',
    url: 'https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-2.9.0%2Bcu130.zip',
    sha256: 'bbc97b248cb6add93a9f1bfa53136615c7ce55ca63bd99c812be4273354d4434',
  },
};

/**
 * The build to use from the cache or to download: an override (XCEPTION_TORCH_LIBTORCH_URL and
 * XCEPTION_TORCH_LIBTORCH_SHA256), else the pin of the variant. `run` asks nvidia-smi for a GPU when
 * XCEPTION_TORCH_VARIANT does not say; `log` tells which variant that chose.
 */
export function choosePin(env: NodeJS.ProcessEnv, run: (cmd: string, args: string[]) => CommandResult, log: (msg: string) => void): LibtorchPin {
  const requested = env.XCEPTION_TORCH_VARIANT;
  let variant: LibtorchVariant;
  if (requested) {
    if (requested !== 'cpu' && requested !== 'cuda') {
      throw new Error(`XCEPTION_TORCH_VARIANT must be "cpu" or "cuda", not "${requested}".`);
    }
    variant = requested;
  } else {
    const smi = run('nvidia-smi', ['-L']);
    variant = smi.status === 0 && /GPU/i.test(smi.stdout) ? 'cuda' : 'cpu';
    log(`variant ${variant} (${variant === 'cuda' ? 'nvidia-smi lists a GPU' : 'no GPU found by nvidia-smi'}; set XCEPTION_TORCH_VARIANT to choose)`);
  }
  const url = env.XCEPTION_TORCH_LIBTORCH_URL;
  const sha256 = env.XCEPTION_TORCH_LIBTORCH_SHA256;
  if (url || sha256) {
    if (!url || !sha256) {
      throw new Error(
        'XCEPTION_TORCH_LIBTORCH_URL and XCEPTION_TORCH_LIBTORCH_SHA256 must be set together ' +
          '(the URL of a libtorch zip and its sha256).',
      );
    }
    const digest = sha256.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(digest)) {
      throw new Error(`XCEPTION_TORCH_LIBTORCH_SHA256 is not a sha256 (64 hex digits): ${sha256}`);
    }
    const known = Object.values(LIBTORCH_PINS).find((p) => p.sha256 === digest);
    return { version: known ? known.version : `custom-${digest.slice(0, 12)}`, variant, url, sha256: digest };
  }
  return LIBTORCH_PINS[variant];
}
