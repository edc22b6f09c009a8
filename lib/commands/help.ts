// The end of each command's --help: examples to copy, and the environment variables it honours
// (each variable described once, here).

/** The environment variables the commands honour. */
export const ENVIRONMENT = Object.freeze({
  cache: ['XCEPTION_TORCH_CACHE', 'where CIFAR-10 is cached (default $XDG_CACHE_HOME/xception-torch, else ~/.cache/xception-torch)'],
  cifar10: ['XCEPTION_TORCH_CIFAR10_URL, _MD5', 'another source of cifar-10-binary.tar.gz, and its MD5'],
  extractLimits: ['XCEPTION_TORCH_CIFAR10_MAX_BYTES, _MAX_ENTRY_BYTES', 'what the archive may unpack to, in all and per file'],
  proxy: ['HTTPS_PROXY, HTTP_PROXY, NO_PROXY', "proxies for downloads (npm's proxy settings too)"],
  deadline: ['XCEPTION_TORCH_DOWNLOAD_DEADLINE', 'seconds a download may take in all (default 7200)'],
  distributed: ['RANK, WORLD_SIZE, LOCAL_RANK, …', "torchrun's variables (--nproc-per-node sets them too): WORLD_SIZE > 1 makes this process one rank of a data-parallel group"],
  distTimeout: ['XCEPTION_TORCH_DIST_TIMEOUT', 'seconds a rank waits for the others (default 1800; --dist-timeout overrides)'],
  malloc: ['XCEPTION_TORCH_MALLOC=default', "leave glibc malloc's own thresholds (by default they are fixed, so tensor memory is reused between steps)"],
} as const);

type Variable = readonly [string, string];

/**
 * "Examples:" and "Environment:" sections for Command.addHelpText('after', …). An example is a
 * command line, with an optional comment after '#' (the comments are lined up).
 */
export function helpFooter(examples: string[], variables: Variable[] = []): string {
  const width = Math.max(0, ...variables.map(([name]) => name.length));
  const split = examples.map((e) => e.split(/\s+#\s+/, 2) as [string, string?]);
  const commandWidth = Math.max(...split.filter(([, note]) => note).map(([command]) => command.length), 0);
  const example = ([command, note]: [string, string?]) => (note ? `  $ ${command.padEnd(commandWidth)}  # ${note}` : `  $ ${command}`);
  const lines = ['', 'Examples:', ...split.map(example)];
  if (variables.length) lines.push('', 'Environment:', ...variables.map(([name, what]) => `  ${name.padEnd(width)}  ${what}`));
  return lines.join('\n');
}

/** The variables of every command that may download CIFAR-10. */
export const DATA_ENVIRONMENT: Variable[] = [ENVIRONMENT.cache, ENVIRONMENT.cifar10, ENVIRONMENT.extractLimits, ENVIRONMENT.proxy, ENVIRONMENT.deadline];

/** The variables of the commands that train data-parallel (train, compare). */
export const TRAIN_ENVIRONMENT: Variable[] = [...DATA_ENVIRONMENT, ENVIRONMENT.distributed, ENVIRONMENT.distTimeout, ENVIRONMENT.malloc];

/** The data-parallel launch forms, as examples for `command` (train or compare). */
export function distributedExamples(command: string): string[] {
  return [
    `xception-torch ${command} --quick --nproc-per-node 2 # 2 processes on this machine (Gloo): 8 images each of the batch of 16`,
    `python3 -m torch.distributed.run --nproc_per_node 2 --no_python npx xception-torch ${command} …`,
    `torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:PORT --no-python npx xception-torch ${command} …`,
  ];
}
