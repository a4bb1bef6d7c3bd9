/**
 * Checks of the test tools themselves: the float64 reference against hand computations and
 * invariances, and the central differences against known gradients and a second step size.
 */
import { describe, expect, test } from 'vitest';

import { numericDirectional, numericGrads } from './gradcheck.ts';
import { dot, expectClose } from './helpers.ts';
import { optionMatrix, randomArray, sampleOf } from './random.ts';
import { referenceForward, referenceProbs } from './reference.ts';

// Two rows [3, 4] and [0, 2]: xn = [0.6, 0.8] and [0, 1], S = [[1, 0.8], [0.8, 1]].
const X2 = Float32Array.of(3, 4, 0, 2);
const A = 1 / (1 + Math.exp(-0.2)); // softmax([1, 0.8])[0]

describe('reference forward by hand', () => {
  test('tokens mode, no LayerNorm', () => {
    const y = referenceForward(X2, [1, 2, 2], { scale: 0.5, layerNorm: false });
    // xneg_0 = A [3, 4] + (1 - A) [0, 2]; z = x - 0.5 xneg
    expectClose(y, [3 - 1.5 * A, 3 - A, -1.5 + 1.5 * A, A], { abs: 1e-14, rel: 0 }, 'y');
    expectClose(y, [2.175249, 2.450166, -0.675249, 0.549834], { abs: 1e-6, rel: 0 }, 'y');
  });

  test('tokens mode, identity and preNorm', () => {
    const y = referenceForward(X2, [1, 2, 2], {
      scale: 0.5,
      identity: true,
      preNorm: true,
      layerNorm: false,
    });
    // V = xn; z = 1.5 xn - 0.5 P xn
    const xneg0 = [0.6 * A, 0.8 * A + (1 - A)];
    const xneg1 = [0.6 * (1 - A), 0.8 * (1 - A) + A];
    const want = [
      0.9 - 0.5 * xneg0[0],
      1.2 - 0.5 * xneg0[1],
      -0.5 * xneg1[0],
      1.5 - 0.5 * xneg1[1],
    ];
    expectClose(y, want, { abs: 1e-14, rel: 0 }, 'y');
  });

  test('tokens mode, dualNorm doubles a symmetric P', () => {
    const P = referenceProbs(X2, [1, 2, 2], { dualNorm: true })[0];
    expectClose(P, [2 * A, 2 * (1 - A), 2 * (1 - A), 2 * A], { abs: 1e-14, rel: 0 }, 'P');
  });

  test('LayerNorm of two channels gives -1 and 1 up to eps', () => {
    const y = referenceForward(X2, [1, 2, 2], { scale: 0.5, layerNorm: { eps: 1e-6 } });
    const z = [3 - 1.5 * A, 3 - A];
    const half = (z[0] - z[1]) / 2;
    const v = half / Math.sqrt(half * half + 1e-6);
    expectClose(y.subarray(0, 2), [v, -v], { abs: 1e-14, rel: 0 }, 'y');
  });

  test('LayerNorm weight and bias', () => {
    const weight = Float32Array.of(2, -1);
    const bias = Float32Array.of(0.5, 0.25);
    const plain = referenceForward(X2, [1, 2, 2], { scale: 0.5 });
    const affine = referenceForward(X2, [1, 2, 2], { scale: 0.5, layerNorm: { weight, bias } });
    const want = plain.map((v, k) => v * weight[k % 2] + bias[k % 2]);
    expectClose(affine, want, { abs: 1e-14, rel: 0 }, 'y');
  });

  test('features mode', () => {
    // S = xn^T xn = [[0.36, 0.48], [0.48, 1.64]]
    const e = Math.exp;
    const P = [
      [e(0.36) / (e(0.36) + e(0.48)), e(0.48) / (e(0.36) + e(0.48))],
      [e(0.48) / (e(0.48) + e(1.64)), e(1.64) / (e(0.48) + e(1.64))],
    ];
    expectClose(
      referenceProbs(X2, [1, 2, 2], { mode: 'features' })[0],
      P.flat(),
      {
        abs: 1e-14,
        rel: 0,
      },
      'P',
    );
    const x = [
      [3, 4],
      [0, 2],
    ];
    const want: number[] = [];
    for (const row of x) {
      for (let d = 0; d < 2; d++) {
        const xneg = row[0] * P[0][d] + row[1] * P[1][d];
        want.push(row[d] - 0.25 * xneg);
      }
    }
    const y = referenceForward(X2, [1, 2, 2], { mode: 'features', scale: 0.25, layerNorm: false });
    expectClose(y, want, { abs: 1e-14, rel: 0 }, 'y');
  });

  test('temperature divides S', () => {
    const P = referenceProbs(X2, [1, 2, 2], { temperature: 0.1 })[0];
    const a = 1 / (1 + Math.exp(-2));
    expectClose(P, [a, 1 - a, 1 - a, a], { abs: 1e-14, rel: 0 }, 'P');
  });

  test('zero row: xn = 0, so its S row is 0 and P uniform', () => {
    const x = Float32Array.of(0, 0, 1, 2);
    const P = referenceProbs(x, [1, 2, 2])[0];
    expect(Array.from(P.subarray(0, 2))).toEqual([0.5, 0.5]);
  });
});

describe('reference invariances', () => {
  const shape = [2, 5, 4] as const;
  const x = randomArray(40, 7);

  test('scale 0 without LayerNorm is the identity', () => {
    for (const mode of ['tokens', 'features'] as const) {
      const y = referenceForward(x, shape, { mode, scale: 0, layerNorm: false });
      expect(Array.from(y)).toEqual(Array.from(x));
    }
  });

  test('an all-false mask, full lengths and a batched copy of a mask change nothing', () => {
    for (const mode of ['tokens', 'features'] as const) {
      const M = mode === 'tokens' ? 5 : 4;
      const base = referenceForward(x, shape, { mode, dualNorm: true });
      const noMask = referenceForward(x, shape, {
        mode,
        dualNorm: true,
        mask: new Uint8Array(M * M),
        lengths: [5, 5],
      });
      expect(Array.from(noMask)).toEqual(Array.from(base));
      const mask = new Uint8Array(M * M).map((_, i) => (i % 3 === 0 ? 1 : 0));
      const shared = referenceForward(x, shape, { mode, mask });
      const batched = new Uint8Array(2 * M * M);
      batched.set(mask, 0);
      batched.set(mask, M * M);
      expect(Array.from(referenceForward(x, shape, { mode, mask: batched }))).toEqual(
        Array.from(shared),
      );
      const asBooleans = Array.from(mask, (v) => v !== 0);
      expect(Array.from(referenceForward(x, shape, { mode, mask: asBooleans }))).toEqual(
        Array.from(shared),
      );
    }
  });

  test('tokens mode is equivariant under a permutation of rows', () => {
    const perm = [3, 0, 4, 1, 2];
    const px = new Float32Array(x.length);
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 5; i++)
        for (let d = 0; d < 4; d++) px[(b * 5 + i) * 4 + d] = x[(b * 5 + perm[i]) * 4 + d];
    const opts = { dualNorm: true, identity: true, scale: 0.3 };
    const y = referenceForward(x, shape, opts);
    const py = referenceForward(px, shape, opts);
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 5; i++)
        for (let d = 0; d < 4; d++) {
          expect(py[(b * 5 + i) * 4 + d]).toBeCloseTo(y[(b * 5 + perm[i]) * 4 + d], 12);
        }
  });

  test('features mode is equivariant under a permutation of channels (mask permuted too)', () => {
    const perm = [2, 0, 3, 1];
    const px = new Float32Array(x.length);
    for (let r = 0; r < 10; r++) for (let d = 0; d < 4; d++) px[r * 4 + d] = x[r * 4 + perm[d]];
    const mask = Uint8Array.of(0, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0);
    const pmask = new Uint8Array(16);
    for (let e = 0; e < 4; e++)
      for (let f = 0; f < 4; f++) pmask[e * 4 + f] = mask[perm[e] * 4 + perm[f]];
    const opts = { mode: 'features', dualNorm: true } as const;
    const y = referenceForward(x, shape, { ...opts, mask });
    const py = referenceForward(px, shape, { ...opts, mask: pmask });
    for (let r = 0; r < 10; r++)
      for (let d = 0; d < 4; d++) expect(py[r * 4 + d]).toBeCloseTo(y[r * 4 + perm[d]], 12);
  });

  test('padding rows give 0 and do not reach the valid rows', () => {
    for (const mode of ['tokens', 'features'] as const) {
      const y = referenceForward(x, shape, { mode, lengths: [3, 0] });
      const x2 = x.slice();
      for (let k = 12; k < 40; k++) x2[k] = 100 + k;
      const y2 = referenceForward(x2, shape, { mode, lengths: [3, 0] });
      expect(Array.from(y2)).toEqual(Array.from(y));
      expect(Array.from(y.subarray(12))).toEqual(new Array(28).fill(0));
      const cut = referenceForward(x.subarray(0, 12), [1, 3, 4], { mode });
      expect(Array.from(y.subarray(0, 12))).toEqual(Array.from(cut));
    }
  });

  test('P rows sum to 1, fully excluded rows and columns are 0', () => {
    const mask = new Uint8Array(25);
    mask.fill(1, 5, 10); // row 1
    for (let i = 0; i < 5; i++) mask[i * 5 + 3] = 1; // column 3
    for (const P of referenceProbs(x, shape, { mask })) {
      for (let i = 0; i < 5; i++) {
        let sum = 0;
        for (let j = 0; j < 5; j++) sum += P[i * 5 + j];
        expect(sum).toBeCloseTo(i === 1 ? 0 : 1, 14);
        expect(P[i * 5 + 3]).toBe(0);
      }
    }
    for (const P of referenceProbs(x, shape, { mask, dualNorm: true })) {
      let total = 0;
      for (const v of P) total += v;
      // 4 live rows and 4 live columns each add 1
      expect(total).toBeCloseTo(8, 13);
      for (let i = 0; i < 5; i++) expect(P[i * 5 + 3]).toBe(0);
    }
  });
});

describe('central differences', () => {
  test('known gradients: y = x, and dL/ds = -sum(dy * P V) without LayerNorm', () => {
    const shape = [2, 4, 3] as const;
    const x = randomArray(24, 3);
    const dy = randomArray(24, 4);
    const g = numericGrads(x, shape, { scale: 0, layerNorm: false }, dy);
    expectClose(g.dx, dy, { abs: 1e-9, rel: 1e-9 }, 'dx');
    const P = referenceProbs(x, shape, {});
    let want = 0;
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 4; i++)
        for (let d = 0; d < 3; d++) {
          let xneg = 0;
          for (let j = 0; j < 4; j++) xneg += P[b][i * 4 + j] * x[(b * 4 + j) * 3 + d];
          want -= dy[(b * 4 + i) * 3 + d] * xneg;
        }
    expectClose(g.dScale, [want], { abs: 1e-9, rel: 1e-8 }, 'dScale');
    const gExp = numericGrads(x, shape, { scale: 0.2, scaleParam: 'exp', layerNorm: false }, dy);
    expectClose(gExp.dScale, [0.2 * want], { abs: 1e-9, rel: 1e-8 }, 'dScale exp');
  });

  test('LayerNorm bias gradient is the column sum of dy over valid rows', () => {
    const shape = [2, 4, 3] as const;
    const x = randomArray(24, 5);
    const dy = randomArray(24, 6);
    const bias = Float32Array.of(0.1, 0.2, 0.3);
    const g = numericGrads(x, shape, { layerNorm: { bias }, lengths: [4, 2] }, dy);
    const want = [0, 0, 0];
    for (let r = 0; r < 8; r++) if (r < 6) for (let d = 0; d < 3; d++) want[d] += dy[r * 3 + d];
    expectClose(g.dBias!, want, { abs: 1e-9, rel: 1e-8 }, 'dBias');
    expect(Array.from(g.dx.subarray(18))).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test('two step sizes agree across sampled options', () => {
    const shape = [2, 4, 3] as const;
    const x = randomArray(24, 11);
    const dy = randomArray(24, 12);
    for (const mode of ['tokens', 'features'] as const) {
      for (const o of sampleOf(optionMatrix(mode, 5, [2, 4, 3]), 12, 9)) {
        const a = numericGrads(x, shape, o, dy);
        const b = numericGrads(x, shape, o, dy, { step: 1e-4 });
        const tol = { abs: 1e-8, rel: 1e-5, relMax: 1e-6 };
        expectClose(a.dx, b.dx, tol, 'dx');
        expectClose(a.dScale, b.dScale, tol, 'dScale');
        if (a.dWeight) expectClose(a.dWeight, b.dWeight!, tol, 'dWeight');
        if (a.dBias) expectClose(a.dBias, b.dBias!, tol, 'dBias');
        const v = randomArray(24, 13);
        const along = numericDirectional(x, shape, o, dy, v);
        expect(Math.abs(along - dot(a.dx, v))).toBeLessThan(1e-6 * (1 + Math.abs(along)));
      }
    }
  });
});
