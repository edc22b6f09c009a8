// The addon's test hooks (native/addon_test_hooks.cpp): not part of the public API; the parity tests
// call them to check single steps of the training loop against PyTorch's and libtorch's own.

export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

export interface NativeTestHooks {
  /** One step of the training loop's Adam/AdamW on `device` (default 'cpu'), for checks against torch.optim. */
  adamStep(args: {
    params: FloatTensor[]; grads: FloatTensor[]; expAvg: FloatTensor[]; expAvgSq: FloatTensor[]; steps: number;
    lr?: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; decoupled?: boolean; device?: string;
  }): { params: FloatTensor[]; expAvg: FloatTensor[]; expAvgSq: FloatTensor[]; steps: number; fused: boolean };
  /** The training loop's GradScaler unscale + update around one step, on `device` (default 'cpu'). */
  gradScalerStep(args: {
    grads: FloatTensor[]; scale: number; growthTracker: number; skippedSteps: number;
    growthFactor?: number; backoffFactor?: number; growthInterval?: number; device?: string;
  }): { grads: FloatTensor[]; foundInf: boolean; scale: number; growthTracker: number; skippedSteps: number };
  /** One convolution (no bias) as a training pass runs it, then backward from gradOutput; `products`: whether it ran
   * as oneDNN matrix products (setTrainingConvolutions) rather than libtorch's convolution. Input channels-last by default. */
  trainingConvolution(args: {
    input: FloatTensor[]; weight: FloatTensor[]; gradOutput: FloatTensor[];
    stride?: number; padding?: number; groups?: number; channelsLast?: boolean;
  }): { output: FloatTensor; gradInput: FloatTensor; gradWeight: FloatTensor; products: boolean };
}
