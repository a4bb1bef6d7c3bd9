/**
 * Shared test helpers: forcing the CPU backend, comparing float32 results with float64 ones
 * under stated tolerances, and bit-for-bit snapshots of inputs.
 */
import { expect } from 'vitest';

import type { ContraNormGrads, ContraNormOptions } from '../lib/types.ts';

/** `options` with `backend: 'cpu'`, so the suites run the CPU path on any machine. */
export function cpu(options: ContraNormOptions = {}): ContraNormOptions {
  return { ...options, backend: 'cpu' };
}

/**
 * Tolerance of `|got - want| <= abs + rel * |want| + relMax * max|want|`. `relMax` scales the
 * absolute part with the size of the whole result, for sums whose terms may cancel.
 */
export interface Tolerance {
  abs: number;
  rel: number;
  relMax?: number;
}

/**
 * float32 against float64. Each output is a short chain of dot products of length D or N with
 * float32 rounding (about 6e-8 relative per step); LayerNorm then divides by the row's standard
 * deviation, which amplifies absolute errors by 1/std(z). Over the whole matrix the worst error
 * measured is about 1.3e-6 absolute, under a tenth of this bound, while a wrong or missing
 * term moves outputs by 1e-3 or more.
 */
export const FORWARD_TOL: Tolerance = { abs: 5e-6, rel: 5e-5 };

/**
 * float32 analytic gradients against float64 central differences of the reference. The
 * differences themselves are good to about 1e-9 relative (see gradcheck.ts); what remains is the
 * float32 backward: sums over rows and channels whose terms partly cancel, so the bound has a
 * part relative to the largest gradient of the array (relMax). On the sampled option matrix the
 * worst error measured is under a twentieth of this bound; a wrong or missing term (a dropped
 * transpose, padding leaking in, a missing dualNorm part) is off by 1e-3 relative or more.
 */
export const GRAD_TOL: Tolerance = { abs: 1e-6, rel: 5e-5, relMax: 5e-6 };

/** The worst element of a comparison, for failure messages. */
export interface Mismatch {
  index: number;
  got: number;
  want: number;
  err: number;
  bound: number;
}

/** Elements of `got` outside the tolerance around `want`; NaN or a length change always fails. */
export function mismatches(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
): Mismatch[] {
  if (got.length !== want.length) {
    return [{ index: -1, got: got.length, want: want.length, err: Infinity, bound: 0 }];
  }
  let maxWant = 0;
  for (let i = 0; i < want.length; i++) maxWant = Math.max(maxWant, Math.abs(want[i]));
  const bad: Mismatch[] = [];
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    const bound = tol.abs + tol.rel * Math.abs(want[i]) + (tol.relMax ?? 0) * maxWant;
    if (!(err <= bound)) bad.push({ index: i, got: got[i], want: want[i], err, bound });
  }
  return bad;
}

/** Asserts `got` is within `tol` of `want`, naming `label` and the worst elements when not. */
export function expectClose(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
  label: string,
): void {
  const bad = mismatches(got, want, tol);
  if (bad.length === 0) return;
  bad.sort((a, b) => b.err / (b.bound || 1) - a.err / (a.bound || 1));
  const worst = bad
    .slice(0, 4)
    .map((m) => `[${m.index}] got ${m.got} want ${m.want} (err ${m.err.toExponential(2)})`)
    .join('; ');
  expect.fail(`${label}: ${bad.length} of ${want.length} outside tolerance: ${worst}`);
}

/** True when every element is finite. */
export function allFinite(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return false;
  return true;
}

/** A copy of the bytes a view covers, to check later that nothing wrote to it. */
export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
}

/** Asserts two float32 arrays hold the same bits (so -0, 0 and NaN payloads count). */
export function expectSameBits(got: Float32Array, want: Float32Array, label: string): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  const a = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const b = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) expect.fail(`${label}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/**
 * Bit-for-bit snapshots of every typed array reachable from the arguments (top level, options
 * and `options.layerNorm`); `check()` asserts none of them changed.
 */
export function guardInputs(...values: unknown[]): { check(label?: string): void } {
  const seen: { view: ArrayBufferView; bytes: Uint8Array; path: string }[] = [];
  const plain: { arr: unknown[]; copy: unknown[]; path: string }[] = [];
  const visit = (v: unknown, path: string, depth: number) => {
    if (ArrayBuffer.isView(v)) {
      if (!isDetachedView(v)) seen.push({ view: v, bytes: bytesOf(v), path });
    } else if (Array.isArray(v)) {
      plain.push({ arr: v, copy: v.slice(), path });
    } else if (typeof v === 'object' && v !== null && depth < 2) {
      for (const [k, inner] of Object.entries(v)) visit(inner, `${path}.${k}`, depth + 1);
    }
  };
  values.forEach((v, i) => visit(v, `arg${i}`, 0));
  return {
    check(label = 'inputs') {
      for (const { view, bytes, path } of seen) {
        const now = bytesOf(view);
        let same = now.length === bytes.length;
        for (let i = 0; same && i < now.length; i++) same = now[i] === bytes[i];
        expect(same, `${label}: ${path} was written to`).toBe(true);
      }
      for (const { arr, copy, path } of plain) {
        expect(arr, `${label}: ${path} was changed`).toEqual(copy);
      }
    },
  };
}

function isDetachedView(view: ArrayBufferView): boolean {
  try {
    new Uint8Array(view.buffer);
    return false;
  } catch {
    return true;
  }
}

/** Detaches the buffer behind `view` by transferring it, as a worker `postMessage` would. */
export function detach(view: ArrayBufferView): void {
  structuredClone(view.buffer, { transfer: [view.buffer as ArrayBuffer] });
}

/** A float64 array as float32, for feeding reference values back into the library. */
export function f32(a: ArrayLike<number>): Float32Array {
  return Float32Array.from(a);
}

/** `sum(a * b)` in float64. */
export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Lines naming each gradient of `got` outside `tol` around `want`. */
export function gradFailures(
  got: Partial<ContraNormGrads> & { dx: ArrayLike<number>; dScale: ArrayLike<number> },
  want: {
    dx: ArrayLike<number>;
    dScale: ArrayLike<number>;
    dWeight?: ArrayLike<number>;
    dBias?: ArrayLike<number>;
  },
  tol: Tolerance,
  label: string,
): string[] {
  const lines: string[] = [];
  const pairs: [string, ArrayLike<number> | undefined, ArrayLike<number> | undefined][] = [
    ['dx', got.dx, want.dx],
    ['dScale', got.dScale, want.dScale],
    ['dWeight', got.dWeight, want.dWeight],
    ['dBias', got.dBias, want.dBias],
  ];
  for (const [name, a, b] of pairs) {
    if (a === undefined && b === undefined) continue;
    if (a === undefined || b === undefined) {
      lines.push(`${label}: ${name} ${a === undefined ? 'missing' : 'unexpected'}`);
      continue;
    }
    const bad = mismatches(a, b, tol);
    if (bad.length > 0) {
      const m = bad[0];
      lines.push(`${label}: ${name}[${m.index}] got ${m.got} want ${m.want} (${bad.length} bad)`);
    }
  }
  return lines;
}
