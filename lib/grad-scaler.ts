// GradScaler: the options and state of mixed-precision loss scaling, with torch.amp.GradScaler's
// defaults and semantics. The scaling itself runs natively inside the training loop
// (native/training.cpp); this object carries its configuration in and its state out.

export interface GradScalerOptions {
  /** Starting loss scale. Default 65536 (2^16). */
  initScale?: number;
  /** Scale multiplier after `growthInterval` steps without inf/NaN gradients. Default 2. */
  growthFactor?: number;
  /** Scale multiplier when a step sees inf/NaN gradients (that step is skipped). Default 0.5. */
  backoffFactor?: number;
  /** Consecutive finite steps before the scale grows. Default 2000. */
  growthInterval?: number;
  /** When false the loss is not scaled and no step is ever skipped. Default true. */
  enabled?: boolean;
}

/** As torch.amp.GradScaler.state_dict(), plus the count of skipped steps. */
export interface GradScalerState {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
  skipped_steps: number;
}

export class GradScaler {
  readonly initScale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly enabled: boolean;
  private currentScale: number;
  private tracker = 0;
  private skipped = 0;

  constructor(options: GradScalerOptions = {}) {
    this.initScale = options.initScale ?? 65536;
    this.growthFactor = options.growthFactor ?? 2;
    this.backoffFactor = options.backoffFactor ?? 0.5;
    this.growthInterval = options.growthInterval ?? 2000;
    this.enabled = options.enabled ?? true;
    if (!(this.initScale > 0) || !Number.isFinite(this.initScale)) throw new RangeError(`initScale must be a positive number; got ${this.initScale}`);
    if (!(this.growthFactor > 1)) throw new RangeError(`growthFactor must be greater than 1; got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new RangeError(`backoffFactor must be in (0, 1); got ${this.backoffFactor}`);
    if (!Number.isSafeInteger(this.growthInterval) || this.growthInterval < 1) {
      throw new RangeError(`growthInterval must be a positive integer; got ${this.growthInterval}`);
    }
    this.currentScale = this.initScale;
  }

  /** The current loss scale (1 when disabled). */
  get scale(): number {
    return this.enabled ? this.currentScale : 1;
  }

  /** Finite steps since the scale last changed. */
  get growthTracker(): number {
    return this.tracker;
  }

  /** Optimizer steps skipped because of inf/NaN gradients. */
  get skippedSteps(): number {
    return this.skipped;
  }

  /** The options as the native training loop reads them. */
  toNative(): { enabled: boolean; initScale: number; growthFactor: number; backoffFactor: number; growthInterval: number } {
    return {
      enabled: this.enabled, initScale: this.currentScale, growthFactor: this.growthFactor,
      backoffFactor: this.backoffFactor, growthInterval: this.growthInterval,
    };
  }

  /** Takes the state reported by the training loop. */
  update(state: { scale: number; growthTracker: number; skippedSteps: number }): void {
    this.currentScale = state.scale;
    this.tracker = state.growthTracker;
    this.skipped = state.skippedSteps;
  }

  stateDict(): GradScalerState {
    return {
      scale: this.currentScale, growth_factor: this.growthFactor, backoff_factor: this.backoffFactor,
      growth_interval: this.growthInterval, _growth_tracker: this.tracker, skipped_steps: this.skipped,
    };
  }

  loadStateDict(state: GradScalerState): void {
    if (typeof state?.scale !== 'number' || !(state.scale > 0)) throw new RangeError('GradScaler state needs a positive scale');
    this.currentScale = state.scale;
    this.tracker = state._growth_tracker ?? 0;
    this.skipped = state.skipped_steps ?? 0;
  }
}
