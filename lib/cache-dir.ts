// Where xception-torch keeps what it downloads (libtorch, datasets).
import * as os from 'os';
import * as path from 'path';

/**
 * The cache folder: `XCEPTION_TORCH_CACHE` if set, else `$XDG_CACHE_HOME/xception-torch`, else
 * `~/.cache/xception-torch`.
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.XCEPTION_TORCH_CACHE) return path.resolve(env.XCEPTION_TORCH_CACHE);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'xception-torch');
  return path.join(env.HOME || os.homedir(), '.cache', 'xception-torch');
}
