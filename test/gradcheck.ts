/**
 * Gradients of the float64 reference by central differences, for checking the analytic
 * backward. The loss is `L = sum(dy * referenceForward(x))`; its gradients are taken for x, the
 * stored scale parameter (s, or log s with `scaleParam: 'exp'`), the LayerNorm weight and bias.
 *
 * The step is `h = 1e-5` times the size of the value (at least the input's RMS for x, 1 for the
 * parameters): in float64 the truncation error (h^2 f''') and the rounding error (1e-16 L / h)
 * are then both near 1e-10 relative, far below what a float32 backward can reach.
 */
import type { ContraNormOptions } from '../lib/types.ts';
import { referenceCore, resolveReferenceOptions } from './reference.ts';
import type { RefParams, RefShape } from './reference.ts';

/** Gradients of `sum(dy * y)` by central differences, in float64. */
export interface NumericGrads {
  dx: Float64Array;
  /** For s (length 1 or D), or for log s with `scaleParam: 'exp'`. */
  dScale: Float64Array;
  /** Present when `options.layerNorm.weight` is given. */
  dWeight?: Float64Array;
  /** Present when `options.layerNorm.bias` is given. */
  dBias?: Float64Array;
}

/** Relative step of the central differences. */
export const STEP = 1e-5;

/** `sum(dy * y)` of the reference, in float64. */
export function referenceLoss(
  x: Float64Array,
  shape: RefShape,
  p: RefParams,
  dy: ArrayLike<number>,
): number {
  const { y } = referenceCore(x, shape, p);
  let sum = 0;
  for (let k = 0; k < y.length; k++) sum += dy[k] * y[k];
  return sum;
}

function rms(a: ArrayLike<number>): number {
  let sq = 0;
  for (let i = 0; i < a.length; i++) sq += a[i] * a[i];
  return a.length === 0 ? 0 : Math.sqrt(sq / a.length);
}

/** Central difference of `f` at `v[k]` with step `h`, restoring `v[k]` afterwards. */
function partial(v: Float64Array, k: number, h: number, f: () => number): number {
  const keep = v[k];
  v[k] = keep + h;
  const plus = f();
  v[k] = keep - h;
  const minus = f();
  v[k] = keep;
  return (plus - minus) / (2 * h);
}

/**
 * Every gradient of `L = sum(dy * referenceForward(x, shape, options))` by central differences:
 * for each element of x, of the scale (s, or log s for `scaleParam: 'exp'`), of the LayerNorm
 * weight and bias. `parts` limits which are computed (x costs two forward calls per element)
 * and can change the relative step.
 */
export function numericGrads(
  x: Float32Array | Float64Array,
  shape: RefShape,
  options: ContraNormOptions,
  dy: ArrayLike<number>,
  parts: { x?: boolean; params?: boolean; step?: number } = {},
): NumericGrads {
  const step = parts.step ?? STEP;
  const p = resolveReferenceOptions(shape, options);
  const xv = Float64Array.from(x);
  const loss = () => referenceLoss(xv, shape, p, dy);
  const dx = new Float64Array(xv.length);

  // x
  if (parts.x !== false) {
    const base = rms(xv) || 1;
    for (let k = 0; k < xv.length; k++) {
      dx[k] = partial(xv, k, step * Math.max(Math.abs(xv[k]), base), loss);
    }
  }

  // scale: perturb s directly, or log s through s = exp(log s)
  const dScale = new Float64Array(p.scale.length);
  if (parts.params !== false) {
    if (p.scaleParam === 'exp') {
      const logS = p.scale.map(Math.log);
      const lossLog = () => {
        for (let j = 0; j < logS.length; j++) p.scale[j] = Math.exp(logS[j]);
        return loss();
      };
      for (let j = 0; j < logS.length; j++) dScale[j] = partial(logS, j, step, lossLog);
      for (let j = 0; j < logS.length; j++) p.scale[j] = Math.exp(logS[j]);
    } else {
      for (let j = 0; j < p.scale.length; j++) {
        dScale[j] = partial(p.scale, j, step * Math.max(1, Math.abs(p.scale[j])), loss);
      }
    }
  }

  // layer norm weight and bias
  const grads: NumericGrads = { dx, dScale };
  if (p.weight !== null) {
    const w = p.weight;
    grads.dWeight = new Float64Array(w.length);
    if (parts.params !== false) {
      for (let d = 0; d < w.length; d++) {
        grads.dWeight[d] = partial(w, d, step * Math.max(1, Math.abs(w[d])), loss);
      }
    }
  }
  if (p.bias !== null) {
    const c = p.bias;
    grads.dBias = new Float64Array(c.length);
    if (parts.params !== false) {
      for (let d = 0; d < c.length; d++) {
        grads.dBias[d] = partial(c, d, step * Math.max(1, Math.abs(c[d])), loss);
      }
    }
  }
  return grads;
}

/** A direction in the space of x and the parameters; absent parts do not move. */
export interface Direction {
  x?: ArrayLike<number>;
  /** Moves s, or log s with `scaleParam: 'exp'`. */
  scale?: ArrayLike<number>;
  weight?: ArrayLike<number>;
  bias?: ArrayLike<number>;
}

/**
 * The derivative of `L` along a direction, `(L(+t) - L(-t)) / 2t`, for inputs too large to
 * difference element by element. A plain array is a direction of x alone. Compare with
 * `sum(dx * v.x) + sum(dScale * v.scale) + sum(dWeight * v.weight) + sum(dBias * v.bias)`.
 */
export function numericDirectional(
  x: Float32Array | Float64Array,
  shape: RefShape,
  options: ContraNormOptions,
  dy: ArrayLike<number>,
  v: ArrayLike<number> | Direction,
): number {
  const dir: Direction = isArrayLike(v) ? { x: v } : v;
  const p = resolveReferenceOptions(shape, options);
  const base = Float64Array.from(x);
  const s0 = p.scale.slice();
  const w0 = p.weight?.slice() ?? null;
  const b0 = p.bias?.slice() ?? null;
  const size = Math.max(
    rms(dir.x ?? []),
    rms(dir.scale ?? []),
    rms(dir.weight ?? []),
    rms(dir.bias ?? []),
  );
  const t = (STEP * Math.max(1, rms(base))) / (size || 1);
  const moved = base.slice();
  const at = (h: number) => {
    if (dir.x) for (let k = 0; k < base.length; k++) moved[k] = base[k] + h * dir.x[k];
    if (dir.scale) {
      for (let j = 0; j < s0.length; j++) {
        p.scale[j] =
          p.scaleParam === 'exp' ? s0[j] * Math.exp(h * dir.scale[j]) : s0[j] + h * dir.scale[j];
      }
    }
    if (dir.weight && w0)
      for (let d = 0; d < w0.length; d++) p.weight![d] = w0[d] + h * dir.weight[d];
    if (dir.bias && b0) for (let d = 0; d < b0.length; d++) p.bias![d] = b0[d] + h * dir.bias[d];
    return referenceLoss(moved, shape, p, dy);
  };
  return (at(t) - at(-t)) / (2 * t);
}

function isArrayLike(v: ArrayLike<number> | Direction): v is ArrayLike<number> {
  return typeof (v as ArrayLike<number>).length === 'number';
}
