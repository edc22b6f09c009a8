// The kinds of failure the package reports, and which exit code each one means for the CLI:
//   a mistake in what the caller asked for (bad options, shapes, a disposed object)  -> exit 2
//   a failure while the work ran (libtorch, out of memory, a diverged run, files)    -> exit 1
// The addon tags every error it throws with a code (native/napi_support.h): XT_INVALID_ARGUMENT
// for the first kind, XT_OUT_OF_MEMORY and XT_RUNTIME for the second, also across worker threads.

/** The model, or the addon on its behalf, was asked for something it cannot do (exit code 2). */
export class ModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelError';
  }
}

export type NativeErrorCode = 'XT_RUNTIME' | 'XT_OUT_OF_MEMORY';

/** libtorch failed while running valid work: out of memory, a CUDA error, … (exit code 1). */
export class NativeRuntimeError extends Error {
  constructor(message: string, readonly code: NativeErrorCode) {
    super(message);
    this.name = code === 'XT_OUT_OF_MEMORY' ? 'OutOfMemoryError' : 'NativeRuntimeError';
  }
}

/** Training stopped because the loss became NaN or infinite (exit code 1). */
export class TrainingDivergedError extends Error {
  constructor(
    message: string,
    /** 1-based epoch and batch where the loss first was not finite. */
    readonly epoch: number,
    readonly batch: number,
  ) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

/** The package's error for something the addon threw, keeping its kind. */
export function fromNative(error: unknown): Error {
  if (error instanceof ModelError || error instanceof NativeRuntimeError) return error;
  // Duck-typed: the addon's errors come from the main realm, which `instanceof` misses in a vm
  // context (jest's, for one).
  if (typeof error !== 'object' || error === null || typeof (error as Error).message !== 'string') {
    return new NativeRuntimeError(String(error), 'XT_RUNTIME');
  }
  const { message, name } = error as Error;
  const code = (error as { code?: unknown }).code;
  if (code === 'XT_OUT_OF_MEMORY' || code === 'XT_RUNTIME') return new NativeRuntimeError(message, code);
  if (code === 'XT_INVALID_ARGUMENT' || name === 'RangeError' || name === 'TypeError') return new ModelError(message);
  return error as Error;
}

/** An image file that could not be read or decoded (exit code 1); `file` names it. */
export class ImageDecodeError extends Error {
  constructor(readonly file: string, reason: string) {
    super(`cannot decode image ${file}: ${reason}`);
    this.name = 'ImageDecodeError';
  }
}
