/**
 * A float64 reference of the ContraNorm forward, written from the formulas of the design
 * (section 2) and the decided semantics, with plain loops and nothing shared with the library.
 * Per item b of `x` `[B, N, D]`, over its L valid rows (L = lengths[b], else N):
 *
 *   xn_i  = x_i / max(||x_i||, eps)
 *   S     = xn xn^T / tau  ([N, N], tokens)   or   xn^T xn / tau  ([D, D], features)
 *   P     = rowSoftmax(S) (+ colSoftmax(S) with dualNorm); excluded entries take no part, and
 *           a fully excluded row (column) gives a zero row (column)
 *   V     = preNorm ? xn : x
 *   xneg  = P V  (tokens)   or   V P  (features)
 *   z     = identity ? (1 + s) V - s xneg : V - s xneg
 *   y     = layerNorm ? (z - mean(z)) / sqrt(var(z) + lnEps) * weight + bias : z   (per row)
 *
 * Padding rows (i >= L) take no part in S and their y rows are 0.
 */
import type { ContraNormOptions } from '../lib/types.ts';

/** `[B, N, D]`. */
export type RefShape = readonly [B: number, N: number, D: number];

/** The options resolved to plain float64 values: what the reference computes with. */
export interface RefParams {
  mode: 'tokens' | 'features';
  /** `s`, length 1 (scalar) or D. Always `s` itself, also for `scaleParam: 'exp'`. */
  scale: Float64Array;
  scaleParam: 'linear' | 'exp';
  temperature: number;
  identity: boolean;
  dualNorm: boolean;
  preNorm: boolean;
  lengths: number[] | null;
  mask: Uint8Array | null;
  maskBatched: boolean;
  layerNorm: boolean;
  weight: Float64Array | null;
  bias: Float64Array | null;
  lnEps: number;
  eps: number;
}

/** Fills in the defaults of `options` (which must be valid) for `shape`. */
export function resolveReferenceOptions(
  shape: RefShape,
  options: ContraNormOptions = {},
): RefParams {
  const [B, N, D] = shape;
  const mode = options.mode ?? 'tokens';
  const M = mode === 'tokens' ? N : D;
  const scaleOpt = options.scale ?? 0.1;
  const scale =
    typeof scaleOpt === 'number' ? Float64Array.of(scaleOpt) : Float64Array.from(scaleOpt);
  if (scale.length !== 1 && scale.length !== D) throw new Error('reference: bad scale length');

  let mask: Uint8Array | null = null;
  let maskBatched = false;
  if (options.mask !== undefined) {
    mask = Uint8Array.from(options.mask as ArrayLike<number | boolean>, (v) => (v ? 1 : 0));
    if (mask.length === M * M) maskBatched = false;
    else if (mask.length === B * M * M) maskBatched = true;
    else throw new Error('reference: bad mask length');
  }

  const ln = options.layerNorm;
  const layerNorm = ln !== false;
  const lnObj = typeof ln === 'object' ? ln : {};
  return {
    mode,
    scale,
    scaleParam: options.scaleParam ?? 'linear',
    temperature: options.temperature ?? 1,
    identity: options.identity ?? false,
    dualNorm: options.dualNorm ?? false,
    preNorm: options.preNorm ?? false,
    lengths: options.lengths === undefined ? null : Array.from(options.lengths, Number),
    mask,
    maskBatched,
    layerNorm,
    weight: layerNorm && lnObj.weight !== undefined ? Float64Array.from(lnObj.weight) : null,
    bias: layerNorm && lnObj.bias !== undefined ? Float64Array.from(lnObj.bias) : null,
    lnEps: lnObj.eps ?? 1e-6,
    eps: options.eps ?? 1e-12,
  };
}

/** What one item's forward computed: P (`[M, M]`) and the output rows. */
export interface RefItem {
  /** Valid rows of the item. */
  L: number;
  /** The probability matrix, `[M, M]` row-major (M = N tokens, D features). */
  P: Float64Array;
}

/**
 * The reference forward: `y` `[B, N, D]` in float64 for `x` and `options` (backend, out,
 * precision and saveForBackward are ignored).
 */
export function referenceForward(
  x: Float32Array | Float64Array,
  shape: RefShape,
  options?: ContraNormOptions,
): Float64Array {
  return referenceCore(Float64Array.from(x), shape, resolveReferenceOptions(shape, options)).y;
}

/** P of each item, `[M, M]` row-major each, for the same arguments as `referenceForward`. */
export function referenceProbs(
  x: Float32Array | Float64Array,
  shape: RefShape,
  options?: ContraNormOptions,
): Float64Array[] {
  const { items } = referenceCore(
    Float64Array.from(x),
    shape,
    resolveReferenceOptions(shape, options),
  );
  return items.map((item) => item.P);
}

/** The reference forward on resolved parameters; `gradcheck.ts` perturbs those. */
export function referenceCore(
  x: Float64Array,
  shape: RefShape,
  p: RefParams,
): { y: Float64Array; items: RefItem[] } {
  const [B, N, D] = shape;
  if (x.length !== B * N * D) throw new Error('reference: x length is not B*N*D');
  const y = new Float64Array(B * N * D);
  const items: RefItem[] = [];
  const M = p.mode === 'tokens' ? N : D;
  const sOf = (d: number) => (p.scale.length === 1 ? p.scale[0] : p.scale[d]);

  for (let b = 0; b < B; b++) {
    const L = p.lengths === null ? N : p.lengths[b];
    const at = (i: number, d: number) => x[(b * N + i) * D + d];

    // normalize the valid rows
    const xn = new Float64Array(N * D);
    for (let i = 0; i < L; i++) {
      let sq = 0;
      for (let d = 0; d < D; d++) sq += at(i, d) * at(i, d);
      const r = Math.max(Math.sqrt(sq), p.eps);
      for (let d = 0; d < D; d++) xn[i * D + d] = at(i, d) / r;
    }
    const V = new Float64Array(N * D);
    for (let i = 0; i < L; i++) {
      for (let d = 0; d < D; d++) V[i * D + d] = p.preNorm ? xn[i * D + d] : at(i, d);
    }

    // similarities: which entries of S take part, and their values
    const allowed = (i: number, j: number): boolean => {
      if (p.mode === 'tokens' && (i >= L || j >= L)) return false;
      if (p.mask === null) return true;
      const base = p.maskBatched ? b * M * M : 0;
      return p.mask[base + i * M + j] === 0;
    };
    const S = new Float64Array(M * M);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < M; j++) {
        let dot = 0;
        if (p.mode === 'tokens') {
          if (i < L && j < L) for (let d = 0; d < D; d++) dot += xn[i * D + d] * xn[j * D + d];
        } else {
          for (let n = 0; n < L; n++) dot += xn[n * D + i] * xn[n * D + j];
        }
        S[i * M + j] = dot / p.temperature;
      }
    }

    // probabilities
    const P = new Float64Array(M * M);
    for (let i = 0; i < M; i++) {
      const cells: number[] = [];
      for (let j = 0; j < M; j++) if (allowed(i, j)) cells.push(i * M + j);
      softmaxInto(S, P, cells);
    }
    if (p.dualNorm) {
      for (let j = 0; j < M; j++) {
        const cells: number[] = [];
        for (let i = 0; i < M; i++) if (allowed(i, j)) cells.push(i * M + j);
        softmaxInto(S, P, cells);
      }
    }
    items.push({ L, P });

    // negatives
    const xneg = new Float64Array(N * D);
    for (let i = 0; i < L; i++) {
      for (let d = 0; d < D; d++) {
        let acc = 0;
        if (p.mode === 'tokens') {
          for (let j = 0; j < L; j++) acc += P[i * M + j] * V[j * D + d];
        } else {
          for (let e = 0; e < D; e++) acc += V[i * D + e] * P[e * M + d];
        }
        xneg[i * D + d] = acc;
      }
    }

    // combine and layer norm, valid rows only (padding rows stay 0)
    const z = new Float64Array(D);
    for (let i = 0; i < L; i++) {
      for (let d = 0; d < D; d++) {
        const s = sOf(d);
        const v = V[i * D + d];
        z[d] = (p.identity ? (1 + s) * v : v) - s * xneg[i * D + d];
      }
      const row = (b * N + i) * D;
      if (!p.layerNorm) {
        for (let d = 0; d < D; d++) y[row + d] = z[d];
        continue;
      }
      let mean = 0;
      for (let d = 0; d < D; d++) mean += z[d];
      mean /= D;
      let variance = 0;
      for (let d = 0; d < D; d++) variance += (z[d] - mean) * (z[d] - mean);
      variance /= D;
      const rstd = 1 / Math.sqrt(variance + p.lnEps);
      for (let d = 0; d < D; d++) {
        const w = p.weight === null ? 1 : p.weight[d];
        const c = p.bias === null ? 0 : p.bias[d];
        y[row + d] = (z[d] - mean) * rstd * w + c;
      }
    }
  }
  return { y, items };
}

/** Adds the softmax of `S` over the listed cells into `P`; an empty list adds nothing. */
function softmaxInto(S: Float64Array, P: Float64Array, cells: number[]): void {
  if (cells.length === 0) return;
  let max = -Infinity;
  for (const c of cells) max = Math.max(max, S[c]);
  let sum = 0;
  for (const c of cells) sum += Math.exp(S[c] - max);
  for (const c of cells) P[c] += Math.exp(S[c] - max) / sum;
}
