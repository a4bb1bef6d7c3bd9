/**
 * The decided edge cases: fully excluded rows and columns, zero rows, extreme temperatures,
 * N = 1 and D = 1, padding rows. Each is checked for NaN, against the reference, and for its
 * gradients against central differences.
 */
import { describe, expect, test } from 'vitest';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormGrads, ContraNormOptions } from '../lib/index.ts';
import { numericGrads } from './gradcheck.ts';
import { allFinite, cpu, expectClose, expectSameBits, FORWARD_TOL, GRAD_TOL } from './helpers.ts';
import { randomArray } from './random.ts';
import type { TestShape } from './random.ts';
import { referenceForward, referenceProbs } from './reference.ts';

const MODES = ['tokens', 'features'] as const;

/** Forward and backward of one call, asserting neither holds a NaN or an infinity. */
function run(x: Float32Array, shape: TestShape, o: ContraNormOptions, dy: Float32Array) {
  const { y, saved } = contraNorm(x, shape, cpu(o));
  expect(allFinite(y), 'y is finite').toBe(true);
  const g = contraNormBackward(dy, saved!);
  for (const [k, v] of Object.entries(g)) expect(allFinite(v), `${k} is finite`).toBe(true);
  return { y, g };
}

/** Every gradient of `g` against central differences (x only where `rows` allows). */
function expectGrads(
  g: ContraNormGrads,
  x: Float32Array,
  shape: TestShape,
  o: ContraNormOptions,
  dy: Float32Array,
  label: string,
) {
  const n = numericGrads(x, shape, o, dy);
  expectClose(g.dx, n.dx, GRAD_TOL, `${label} dx`);
  expectClose(g.dScale, n.dScale, GRAD_TOL, `${label} dScale`);
  if (n.dWeight) expectClose(g.dWeight!, n.dWeight, GRAD_TOL, `${label} dWeight`);
  if (n.dBias) expectClose(g.dBias!, n.dBias, GRAD_TOL, `${label} dBias`);
}

/** LayerNorm of one row without affine, in float64. */
function layerNormRow(row: ArrayLike<number>, eps = 1e-6): number[] {
  const D = row.length;
  let mean = 0;
  for (let d = 0; d < D; d++) mean += row[d] / D;
  let v = 0;
  for (let d = 0; d < D; d++) v += (row[d] - mean) ** 2 / D;
  return Array.from(row, (r) => (r - mean) / Math.sqrt(v + eps));
}

describe('fully excluded rows and columns', () => {
  const shape: TestShape = [2, 5, 4];
  const x = randomArray(40, 31);
  const dy = randomArray(40, 32);

  test('tokens: a fully excluded row has P = 0, so its output is LayerNorm(x) and no NaN', () => {
    const mask = new Uint8Array(25);
    mask.fill(1, 10, 15); // row 2 of S
    for (const identity of [false, true]) {
      const o: ContraNormOptions = { mask, identity, scale: 0.5 };
      const { y, g } = run(x, shape, o, dy);
      for (const P of referenceProbs(x, shape, o)) {
        expect(Array.from(P.subarray(10, 15))).toEqual([0, 0, 0, 0, 0]);
      }
      for (let b = 0; b < 2; b++) {
        const row = (b * 5 + 2) * 4;
        // z = V (or (1 + s) V): LayerNorm removes the factor
        expectClose(
          y.subarray(row, row + 4),
          layerNormRow(x.subarray(row, row + 4)),
          FORWARD_TOL,
          'row 2',
        );
      }
      expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, 'y');
      expectGrads(g, x, shape, o, dy, `identity ${identity}`);
    }
  });

  test('a fully excluded S gives z = V in both modes', () => {
    for (const mode of MODES) {
      const M = mode === 'tokens' ? 5 : 4;
      const o: ContraNormOptions = { mode, mask: new Uint8Array(M * M).fill(1), layerNorm: false };
      const { y, g } = run(x, shape, o, dy);
      expectClose(y, x, { abs: 0, rel: 0 }, `${mode} y`);
      expectClose(g.dx, dy, { abs: 0, rel: 0 }, `${mode} dx`);
      expect(Array.from(g.dScale)).toEqual([0]);
    }
  });

  test.each(MODES)('%s: dualNorm with a fully excluded column gives no NaN', (mode) => {
    const M = mode === 'tokens' ? 5 : 4;
    const mask = new Uint8Array(2 * M * M);
    for (let i = 0; i < M; i++) mask[i * M + 1] = 1; // item 0, column 1
    for (let i = 0; i < M; i++) mask[M * M + i * M + (M - 1)] = 1; // item 1, last column
    mask.fill(1, M * M, M * M + M); // item 1, row 0 too
    const weight = randomArray(4, 33);
    const o: ContraNormOptions = { mode, mask, dualNorm: true, layerNorm: { weight } };
    const P = referenceProbs(x, shape, o);
    for (let i = 0; i < M; i++) expect(P[0][i * M + 1]).toBe(0);
    const { y, g } = run(x, shape, o, dy);
    expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, 'y');
    expectGrads(g, x, shape, o, dy, mode);
  });

  test.each(MODES)('%s: every row and column of one item excluded, with dualNorm', (mode) => {
    const M = mode === 'tokens' ? 5 : 4;
    const mask = new Uint8Array(2 * M * M);
    mask.fill(1, 0, M * M);
    const o: ContraNormOptions = { mode, mask, dualNorm: true, identity: true };
    const { y, g } = run(x, shape, o, dy);
    expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, 'y');
    expectGrads(g, x, shape, o, dy, mode);
  });
});

describe('zero rows', () => {
  const shape: TestShape = [2, 4, 5];
  const dy = randomArray(40, 41);

  test.each(MODES)('%s: a zero row gives finite output and gradients', (mode) => {
    const x = randomArray(40, 42);
    x.fill(0, 5, 10); // item 0, row 1
    x.fill(0, 20, 40); // item 1, every row
    for (const preNorm of [false, true]) {
      for (const layerNorm of [false, {}] as const) {
        const o: ContraNormOptions = { mode, preNorm, layerNorm, dualNorm: true };
        const { y, g } = run(x, shape, o, dy);
        expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, 'y');
        // central differences are meaningless at a zero row (x / ||x|| jumps there): compare
        // dx on the other rows, and every parameter gradient
        const n = numericGrads(x, shape, o, dy);
        const live = (k: number) => !(k >= 5 && k < 10) && k < 20;
        const got = Array.from(g.dx).filter((_, k) => live(k));
        const want = Array.from(n.dx).filter((_, k) => live(k));
        expectClose(got, want, GRAD_TOL, `preNorm ${preNorm} dx`);
        expectClose(g.dScale, n.dScale, GRAD_TOL, `preNorm ${preNorm} dScale`);
      }
    }
  });

  test.each(MODES)('%s: rows shorter than eps follow x / eps, gradients included', (mode) => {
    // with eps = 0.05 a row of norm about 0.01 sits inside the eps ball, where xn = x / eps is
    // smooth, so central differences apply to it too
    const x = randomArray(40, 43);
    for (let k = 5; k < 10; k++) x[k] *= 0.005;
    for (const preNorm of [false, true]) {
      const o: ContraNormOptions = { mode, eps: 0.05, preNorm, identity: true, scale: 0.3 };
      const { y, g } = run(x, shape, o, dy);
      expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, 'y');
      expectGrads(g, x, shape, o, dy, `preNorm ${preNorm}`);
    }
  });
});

describe('temperatures', () => {
  const shape: TestShape = [2, 6, 5];
  const x = randomArray(60, 51);
  const dy = randomArray(60, 52);

  test.each(MODES)('%s: temperatures 1e-3, 1e-2 and 0.1 overflow nothing', (mode) => {
    // scale 0.2 with identity keeps z away from the cancellation z = V - s * 2V that dualNorm
    // with a one-hot P and s = 0.5 would give, which no float32 LayerNorm can resolve
    for (const temperature of [1e-3, 1e-2, 0.1]) {
      for (const dualNorm of [false, true]) {
        const o: ContraNormOptions = { mode, temperature, dualNorm, scale: 0.2, identity: true };
        const { y } = run(x, shape, o, dy);
        expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, `tau ${temperature}`);
      }
    }
  });

  test.each(MODES)('%s: temperatures from 1e-30 to 1e30 give finite results', (mode) => {
    for (const temperature of [1e-30, 1e-12, 1e-6, 1e6, 1e12, 1e30]) {
      const o: ContraNormOptions = { mode, temperature, dualNorm: true };
      const { y } = run(x, shape, o, dy);
      if (temperature >= 1e6) {
        expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, `tau ${temperature}`);
      }
    }
  });

  test.each(MODES)('%s: temperature 0.1 gradients still match', (mode) => {
    for (const dualNorm of [false, true]) {
      const o: ContraNormOptions = { mode, temperature: 0.1, identity: true, dualNorm };
      const { g } = run(x, shape, o, dy);
      expectGrads(g, x, shape, o, dy, `dualNorm ${dualNorm}`);
    }
  });
});

describe('N = 1 and D = 1', () => {
  const cases: [string, TestShape][] = [
    ['N = 1', [3, 1, 5]],
    ['D = 1', [3, 5, 1]],
    ['N = D = 1', [4, 1, 1]],
  ];
  for (const [name, shape] of cases) {
    test.each(MODES)(`${name}, %s mode`, (mode) => {
      const [B, N, D] = shape;
      const x = randomArray(B * N * D, 61);
      const dy = randomArray(B * N * D, 62);
      const optionSets: ContraNormOptions[] = [
        { mode },
        { mode, layerNorm: false, identity: true, dualNorm: true },
        { mode, layerNorm: false, preNorm: true, scale: randomArray(D, 63) },
        {
          mode,
          scaleParam: 'exp',
          scale: 0.3,
          layerNorm: { weight: randomArray(D, 64), bias: randomArray(D, 65) },
          lengths: Array.from({ length: B }, (_, b) => b % (N + 1)),
        },
      ];
      for (const o of optionSets) {
        const { y, g } = run(x, shape, o, dy);
        expectClose(y, referenceForward(x, shape, o), FORWARD_TOL, 'y');
        expectGrads(g, x, shape, o, dy, JSON.stringify(Object.keys(o)));
      }
    });
  }
});

describe('padding rows', () => {
  const shape: TestShape = [3, 5, 4];
  const x = randomArray(60, 71);

  test.each(MODES)('%s: y and dx rows are exactly 0, and their dy is ignored', (mode) => {
    const lengths = [5, 0, 2];
    const o: ContraNormOptions = {
      mode,
      lengths,
      dualNorm: true,
      scale: randomArray(4, 72),
      layerNorm: { weight: randomArray(4, 73), bias: randomArray(4, 74) },
    };
    const dy = randomArray(60, 75);
    const { y, saved } = contraNorm(x, shape, cpu(o));
    const padding = (k: number) => {
      const b = Math.floor(k / 20);
      const i = Math.floor((k % 20) / 4);
      return i >= lengths[b];
    };
    for (let k = 0; k < 60; k++) if (padding(k)) expect(Object.is(y[k], 0), `y[${k}]`).toBe(true);
    const g = contraNormBackward(dy, saved!);
    for (let k = 0; k < 60; k++)
      if (padding(k)) expect(Object.is(g.dx[k], 0), `dx[${k}]`).toBe(true);

    // other dy on padding rows, other x on padding rows: the same bits everywhere
    const dy2 = dy.map((v, k) => (padding(k) ? 1e3 * (k + 1) : v));
    const x2 = x.map((v, k) => (padding(k) ? -7 * k : v));
    const run2 = contraNorm(x2, shape, cpu(o));
    expectSameBits(run2.y, y, 'y');
    const g2 = contraNormBackward(dy2, run2.saved!);
    expectSameBits(g2.dx, g.dx, 'dx');
    expectSameBits(g2.dScale, g.dScale, 'dScale');
    expectSameBits(g2.dWeight!, g.dWeight!, 'dWeight');
    expectSameBits(g2.dBias!, g.dBias!, 'dBias');
    expectGrads(g, x, shape, o, dy, mode);
  });

  test.each(MODES)('%s: every length 0 gives zeros everywhere', (mode) => {
    const o: ContraNormOptions = {
      mode,
      lengths: new Int32Array(3),
      identity: true,
      layerNorm: { weight: randomArray(4, 76), bias: randomArray(4, 77) },
    };
    const { y, g } = run(x, shape, o, randomArray(60, 78));
    for (const [name, a] of [
      ['y', y],
      ['dx', g.dx],
      ['dScale', g.dScale],
      ['dWeight', g.dWeight!],
      ['dBias', g.dBias!],
    ] as const) {
      expect(
        Array.from(a).every((v) => v === 0),
        `${name} is all 0`,
      ).toBe(true);
    }
  });

  test.each(MODES)('%s: full lengths and an all-false mask change no bit', (mode) => {
    const M = mode === 'tokens' ? 5 : 4;
    const plain = contraNorm(x, shape, cpu({ mode, dualNorm: true })).y;
    const same = contraNorm(
      x,
      shape,
      cpu({ mode, dualNorm: true, lengths: [5, 5, 5], mask: new Uint8Array(M * M) }),
    ).y;
    expectSameBits(same, plain, 'y');
  });

  test('a boolean mask, a batched copy and non-zero values other than 1 act alike', () => {
    const mask = Uint8Array.from({ length: 25 }, (_, k) => (k % 4 === 1 ? 1 : 0));
    const a = contraNorm(x, shape, cpu({ mask })).y;
    const b = contraNorm(x, shape, cpu({ mask: Array.from(mask, (v) => v === 1) })).y;
    const batched = new Uint8Array(75);
    for (let b2 = 0; b2 < 3; b2++) batched.set(mask, 25 * b2);
    const c = contraNorm(x, shape, cpu({ mask: batched })).y;
    const d = contraNorm(x, shape, cpu({ mask: mask.map((v) => (v ? 255 : 0)) })).y;
    expectSameBits(b, a, 'boolean mask');
    expectSameBits(c, a, 'batched mask');
    expectSameBits(d, a, 'mask of 255s');
  });
});
