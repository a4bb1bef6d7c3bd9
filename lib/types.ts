/**
 * Public types of contranorm. Dimension letters are fixed everywhere: B items, N rows (tokens
 * or nodes) per item, D channels. Every buffer is row-major.
 */
import type { DeviceTensor } from './device.ts';

/** `[B, N, D]`: B items of N rows of D channels. */
export type Shape = readonly [B: number, N: number, D: number];

/** Which implementation runs a call. `auto` takes CUDA where it can run, else the CPU path. */
export type BackendName = 'auto' | 'cuda' | 'cpu';

/**
 * `tokens` contrasts the N rows of each item (`S` is `[N, N]`); `features` contrasts the D
 * channels (`S` is `[D, D]`), the variant whose cost grows with N rather than N squared.
 */
export type Mode = 'tokens' | 'features';

/**
 * How the scale is stored when it is learned. `linear`: the parameter is `s`. `exp`: the
 * parameter is `log s`, so `s` stays positive; `dScale` is then the gradient for `log s`.
 */
export type ScaleParam = 'linear' | 'exp';

/** LayerNorm after the contrastive step: `(z - mean) / sqrt(var + eps) * weight + bias`. */
export interface LayerNormOptions {
  /** Per-channel gain, length D. Absent: no gain (as if all ones), and no `dWeight`. */
  weight?: Float32Array;
  /** Per-channel shift, length D. Absent: no shift (as if all zeros), and no `dBias`. */
  bias?: Float32Array;
  /** Added to the variance. Default `1e-6`, as the official module. */
  eps?: number;
}

/** Options of a forward call. Every field is optional; defaults are listed per field. */
export interface ContraNormOptions {
  /** `s`: a number, or a `Float32Array` of length 1 or D (per channel). Default `0.1`. */
  scale?: number | Float32Array;
  /** How `dScale` is reported; see {@link ScaleParam}. Default `'linear'`. */
  scaleParam?: ScaleParam;
  /** `tau` in `softmax(xn xn^T / tau)`; in float32's normal range [1.18e-38, 3.4e38]. Default `1`. */
  temperature?: number;
  /** `z = (1 + s) V - s xneg` instead of `z = V - s xneg`. Default `false`. */
  identity?: boolean;
  /** `P = rowSoftmax(S) + colSoftmax(S)` instead of the row softmax alone. Default `false`. */
  dualNorm?: boolean;
  /** Mix the normalized rows (`V = xn`) instead of the raw ones (`V = x`). Default `false`. */
  preNorm?: boolean;
  /** See {@link Mode}. Default `'tokens'`. */
  mode?: Mode;
  /**
   * Valid rows per item, length B, each in `[0, N]`. Rows at or past an item's length are
   * padding: they take no part in `S`, and their output rows (and gradients) are 0.
   */
  lengths?: Int32Array | Uint32Array | readonly number[];
  /**
   * Entries of `S` to exclude (non-zero or `true` = excluded): `[M, M]` shared by all items or
   * `[B, M, M]`, with M = N in tokens mode and M = D in features mode.
   */
  mask?: Uint8Array | readonly boolean[];
  /**
   * LayerNorm after the step: `{ weight?, bias?, eps? }`, `true` (the same as `{}`), or `false` for
   * none. Default `{}` (no affine, eps 1e-6).
   */
  layerNorm?: LayerNormOptions | boolean;
  /**
   * Floor of the row norm in `xn = x / max(||x||, eps)`, as `F.normalize`; in float32's normal
   * range [1.18e-38, 3.4e38]. Default `1e-12`.
   */
  eps?: number;
  /** `fp32`: float32 products throughout; `tf32` lets CUDA use tensor cores. Default `'fp32'`. */
  precision?: 'fp32' | 'tf32';
  /** A buffer of length B*N*D for `y`, not overlapping `x`. Default: a new array. */
  out?: Float32Array;
  /** Which implementation runs; see {@link BackendName}. Default `CONTRANORM_BACKEND` or `auto`. */
  backend?: BackendName;
  /** Keep what the backward needs. `false` for inference: `saved` is then `null`. Default `true`. */
  saveForBackward?: boolean;
}

/** Options of a backward call. */
export interface BackwardOptions {
  /** A buffer of length B*N*D for `dx`, not overlapping `dy`. Default: a new array. */
  out?: Float32Array;
}

/** Gradients of a backward call. */
export interface ContraNormGrads {
  /** Gradient for `x`, `[B, N, D]`. Padding rows get 0. */
  dx: Float32Array;
  /**
   * Gradient for the stored scale parameter: length 1 for a scalar scale, D for a vector.
   * With `scaleParam: 'exp'` it is the gradient for `log s`.
   */
  dScale: Float32Array;
  /** Gradient for the LayerNorm weight, present when a weight was given. */
  dWeight?: Float32Array;
  /** Gradient for the LayerNorm bias, present when a bias was given. */
  dBias?: Float32Array;
}

/** Options of a forward call on a `DeviceTensor`: the same, with `out` a DeviceTensor. */
export interface ContraNormDeviceOptions extends Omit<ContraNormOptions, 'out'> {
  /** A DeviceTensor of length B*N*D for `y`, other than x. Default: a new DeviceTensor. */
  out?: DeviceTensor;
}

/** Options of a backward call whose `dy` is a `DeviceTensor`. */
export interface DeviceBackwardOptions {
  /** A DeviceTensor of length B*N*D for `dx`, other than dy. Default: a new DeviceTensor. */
  out?: DeviceTensor;
}

/** Gradients of a backward call whose `dy` is a `DeviceTensor`: `dx` stays on the device. */
export interface ContraNormDeviceGrads extends Omit<ContraNormGrads, 'dx'> {
  /** Gradient for `x`, `[B, N, D]`, in device memory. */
  dx: DeviceTensor;
}

/** What `backendInfo()` reports. */
export interface BackendInfo {
  /** The backend `auto` picks now. */
  backend: 'cuda' | 'cpu';
  /** GPU name, when CUDA runs. */
  device?: string;
  /** GPU compute capability such as `'9.0'`, when CUDA runs. */
  computeCapability?: string;
  /** GPU memory in bytes, when CUDA runs. */
  memory?: number;
  /** The cuBLAS library that was opened, when CUDA runs. */
  cublas?: string;
  /** Why the CPU path runs, when it does. */
  reason?: string;
}
