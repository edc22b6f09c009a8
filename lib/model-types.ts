// What every model offers (the Model interface) and the types it speaks in: devices, model names,
// tensors in and out, and what summary() and BatchNorm folding report.
import type { NativeFoldingInfo, NativeLayerRow, NativeSummary } from './native';
import type { LoadWeightsOptions, LoadWeightsResult } from './weights/load-weights';

export type Device = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;
export type ModelName = 'xception' | 'inception_v3';

/** A dense float32 tensor, contiguous and row-major (NCHW for images). */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** One row of `summary()`: a top-level stage of the network, like torchinfo's depth-1 table. */
export type LayerSummary = NativeLayerRow;

/** `summary()`: the stages (`layers`), trainable `parameters`, and `macs` of one eval-mode image. */
export type ModelSummary = NativeSummary;

/** Whether eval passes fold BatchNorm into the convolutions, over how many pairs, and how often the folded weights were computed. */
export type BatchNormFolding = NativeFoldingInfo;

export interface Model {
  readonly name: ModelName;
  /** Trainable parameters, as PyTorch's `sum(p.numel() for p in m.parameters())` counts them. */
  parameterCount(): number;
  /** The names PyTorch's `state_dict()` would list, BatchNorm buffers included, in its order. */
  stateDictKeys(): string[];
  loadSafetensors(path: string, opts?: { strict?: boolean }): Promise<void>;
  /**
   * Loads a `.safetensors` file or a PyTorch `torch.save` state dict (`.pth`, `.pt`, `.bin`, PyTorch
   * >= 1.6), told apart by content; `resetHead` keeps the model's own classifier when its shape differs.
   */
  loadWeights(path: string, opts?: LoadWeightsOptions): Promise<LoadWeightsResult>;
  saveSafetensors(path: string): Promise<void>;
  train(): this;
  eval(): this;
  to(device: Device): this;
  /** Logits for a batch [N, 3, H, W]; runs off the event loop. */
  forward(x: TensorData): Promise<TensorData>;
  /** One eval-mode pass of a zero image, off the event loop: each stage's output shape, parameters and MACs. */
  summary(imageSize?: number): Promise<ModelSummary>;
  /**
   * Eval-mode forward passes (forward(), evaluation) run each convolution and the BatchNorm after
   * it as one convolution with folded weights: a copy, recomputed after the weights change, that
   * leaves the state dict alone. On by default; off runs the layers as they are.
   */
  setBatchNormFolding(enabled: boolean): this;
  batchNormFolding(): BatchNormFolding;
  /** The classifier's modules (state-dict prefixes: `fc`, and Inception V3's `AuxLogits.fc`): what
   * loadWeights' resetHead leaves at its initialisation and a Trainer's freezeBackbone trains. */
  classifierModules(): string[];
  dispose(): void;
}
