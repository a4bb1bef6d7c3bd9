/**
 * Every gradient of the backward (dx, dScale, dWeight, dBias) against central differences of
 * the float64 reference, over a seeded sample of the option matrix in both modes: element by
 * element on small shapes, along random directions on a larger one.
 */
import { describe, expect, test } from 'vitest';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormGrads, ContraNormOptions } from '../lib/index.ts';
import { numericDirectional, numericGrads } from './gradcheck.ts';
import { cpu, dot, expectSameBits, GRAD_TOL, gradFailures, mismatches } from './helpers.ts';
import { describeOptions, optionMatrix, randomArray, Rng, sampleOf } from './random.ts';
import type { TestShape } from './random.ts';

/** The analytic gradients of one call. */
function analytic(x: Float32Array, shape: TestShape, o: ContraNormOptions, dy: Float32Array) {
  const { saved } = contraNorm(x, shape, cpu(o));
  expect(saved).not.toBeNull();
  return contraNormBackward(dy, saved!);
}

/** Which gradients a call must return, and their lengths. */
function expectedKeys(o: ContraNormOptions, D: number) {
  const ln = typeof o.layerNorm === 'object' ? o.layerNorm : {};
  const on = o.layerNorm !== false;
  return {
    scaleLength: o.scale instanceof Float32Array ? o.scale.length : 1,
    weight: on && ln.weight !== undefined ? D : null,
    bias: on && ln.bias !== undefined ? D : null,
  };
}

function elementwise(mode: 'tokens' | 'features', shape: TestShape, count: number, seed: number) {
  const [B, N, D] = shape;
  const rng = new Rng(seed);
  const failures: string[] = [];
  for (const o of sampleOf(optionMatrix(mode, seed, shape), count, seed + 1)) {
    const x = randomArray(B * N * D, rng.int(0, 2 ** 30), rng.pick([0.5, 1, 2]));
    const dy = randomArray(B * N * D, rng.int(0, 2 ** 30));
    const got = analytic(x, shape, o, dy);
    const keys = expectedKeys(o, D);
    expect(got.dx.length).toBe(B * N * D);
    expect(got.dScale.length).toBe(keys.scaleLength);
    expect(got.dWeight?.length ?? null).toBe(keys.weight);
    expect(got.dBias?.length ?? null).toBe(keys.bias);
    failures.push(
      ...gradFailures(got, numericGrads(x, shape, o, dy), GRAD_TOL, describeOptions(o)),
    );
  }
  return failures;
}

describe.each(['tokens', 'features'] as const)('gradients, %s mode', (mode) => {
  test('element by element, shape 2x4x5, 240 sampled combinations', () => {
    const failures = elementwise(mode, [2, 4, 5], 240, mode === 'tokens' ? 11 : 12);
    expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
  });

  test('element by element, shape 3x3x4, 80 sampled combinations', () => {
    const failures = elementwise(mode, [3, 3, 4], 80, mode === 'tokens' ? 13 : 14);
    expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
  });

  test('along random directions, shape 2x9x8, 40 sampled combinations', () => {
    const shape: TestShape = [2, 9, 8];
    const rng = new Rng(mode === 'tokens' ? 15 : 16);
    const failures: string[] = [];
    for (const o of sampleOf(optionMatrix(mode, 17, shape), 40, 18)) {
      const x = randomArray(144, rng.int(0, 2 ** 30));
      const dy = randomArray(144, rng.int(0, 2 ** 30));
      const got = analytic(x, shape, o, dy);
      for (let k = 0; k < 2; k++) {
        const v = randomArray(144, rng.int(0, 2 ** 30));
        const want = numericDirectional(x, shape, o, dy, v);
        const have = dot(got.dx, v);
        let size = 0;
        for (let i = 0; i < 144; i++) size += Math.abs(got.dx[i] * v[i]);
        if (!(Math.abs(have - want) <= 1e-6 + 5e-5 * size)) {
          failures.push(`${describeOptions(o)}: <dx, v> = ${have}, differences give ${want}`);
        }
      }
      const params = numericGrads(x, shape, o, dy, { x: false });
      params.dx = Float64Array.from(got.dx); // compared along directions above
      failures.push(...gradFailures(got, params, GRAD_TOL, describeOptions(o)));
    }
    expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
  });

  test('one saved context serves several backward calls alike', () => {
    const shape: TestShape = [2, 5, 4];
    const x = randomArray(40, 21);
    const dy = randomArray(40, 22);
    const bias = randomArray(4, 23);
    const { saved } = contraNorm(x, shape, cpu({ mode, dualNorm: true, layerNorm: { bias } }));
    const a = contraNormBackward(dy, saved!);
    const other = contraNormBackward(randomArray(40, 24), saved!);
    const b = contraNormBackward(dy, saved!);
    expectSameBits(b.dx, a.dx, 'dx');
    expectSameBits(b.dScale, a.dScale, 'dScale');
    expectSameBits(b.dBias!, a.dBias!, 'dBias');
    expect(Array.from(other.dx)).not.toEqual(Array.from(a.dx));
  });

  test('backward out buffer receives dx', () => {
    const shape: TestShape = [2, 5, 4];
    const x = randomArray(40, 25);
    const dy = randomArray(40, 26);
    const { saved } = contraNorm(x, shape, cpu({ mode }));
    const plain = contraNormBackward(dy, saved!);
    const out = new Float32Array(40).fill(Number.NaN);
    const grads = contraNormBackward(dy, saved!, { out });
    expect(grads.dx).toBe(out);
    expectSameBits(out, plain.dx, 'dx');
  });

  test('the gradients are linear in dy', () => {
    const shape: TestShape = [2, 5, 4];
    const x = randomArray(40, 27);
    const dy = randomArray(40, 28);
    const { saved } = contraNorm(x, shape, cpu({ mode, identity: true, scale: 0.4 }));
    const one = contraNormBackward(dy, saved!);
    const two = contraNormBackward(
      dy.map((v) => 2 * v),
      saved!,
    );
    const zero = contraNormBackward(new Float32Array(40), saved!);
    expect(
      mismatches(
        two.dx,
        Array.from(one.dx, (v) => 2 * v),
        { abs: 0, rel: 1e-6 },
      ),
    ).toEqual([]);
    expect(Array.from(zero.dx).every((v) => v === 0)).toBe(true);
    expect(Array.from(zero.dScale).every((v) => v === 0)).toBe(true);
  });
});
