/**
 * The contract between the API and the backends: a call's resolved options (`Plan`), and what a
 * backend implements (`BackendImpl`) and keeps between forward and backward (`SavedState`).
 */
import type { BackendName, ContraNormGrads, Mode, ScaleParam } from './types.ts';

/** A forward call with its options resolved, copied where the backward needs them later. */
export interface Plan {
  B: number;
  N: number;
  D: number;
  /** Side of `S`: N in tokens mode, D in features mode. */
  M: number;
  mode: Mode;
  /** `s` values, length 1 (scalar) or D (per channel). A private copy. */
  scale: Float32Array;
  scaleParam: ScaleParam;
  temperature: number;
  identity: boolean;
  dualNorm: boolean;
  preNorm: boolean;
  /** Valid rows per item, length B, or null when every row is valid. A private copy. */
  lengths: Int32Array | null;
  /** Excluded entries of `S` (non-zero = excluded), `[M, M]` or `[B, M, M]`, or null. */
  mask: Uint8Array | null;
  maskBatched: boolean;
  layerNorm: boolean;
  /** LayerNorm gain and shift, length D, or null when absent. Private copies. */
  weight: Float32Array | null;
  bias: Float32Array | null;
  lnEps: number;
  eps: number;
  precision: 'fp32' | 'tf32';
  saveForBackward: boolean;
  backend: BackendName;
}

/** What a backend keeps between forward and backward. Opaque outside the backend. */
export interface SavedState {
  /** Frees what the state holds (device memory on CUDA). Called at most once. */
  release(): void;
}

/** One implementation of the layer. Inputs arrive validated; see `Plan`. */
export interface BackendImpl {
  readonly name: 'cpu' | 'cuda';
  forward(
    x: Float32Array,
    plan: Plan,
    out: Float32Array | null,
  ): { y: Float32Array; state: SavedState | null };
  backward(
    dy: Float32Array,
    plan: Plan,
    state: SavedState,
    out: Float32Array | null,
  ): ContraNormGrads;
  forwardAsync(
    x: Float32Array,
    plan: Plan,
    out: Float32Array | null,
  ): Promise<{ y: Float32Array; state: SavedState | null }>;
  backwardAsync(
    dy: Float32Array,
    plan: Plan,
    state: SavedState,
    out: Float32Array | null,
  ): Promise<ContraNormGrads>;
}
