/**
 * The forward against the float64 reference on fresh seeded inputs, over the full matrix of
 * option combinations (2,880 per mode) and a second, differently shaped sample.
 */
import { describe, expect, test } from 'vitest';

import { contraNorm } from '../lib/index.ts';
import type { ContraNormOptions } from '../lib/index.ts';
import { allFinite, cpu, FORWARD_TOL, mismatches } from './helpers.ts';
import { describeOptions, MATRIX_SHAPE, optionMatrix, randomArray, Rng } from './random.ts';
import type { TestShape } from './random.ts';
import { referenceForward } from './reference.ts';

/** Runs each option object on its own fresh input; returns a line per failing case. */
function checkCases(cases: ContraNormOptions[], shape: TestShape, seed: number): string[] {
  const [B, N, D] = shape;
  const rng = new Rng(seed);
  const failures: string[] = [];
  for (const o of cases) {
    const x = randomArray(B * N * D, rng.int(0, 2 ** 30), rng.pick([0.3, 1, 3]));
    const { y } = contraNorm(x, shape, cpu(o));
    const want = referenceForward(x, shape, o);
    const bad = mismatches(y, want, FORWARD_TOL);
    if (bad.length > 0 || !allFinite(y)) {
      const m = bad[0];
      failures.push(
        `${describeOptions(o)}: ${bad.length} bad, e.g. [${m?.index}] got ${m?.got} want ${m?.want}`,
      );
    }
  }
  return failures;
}

function chunks<T>(list: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

describe.each(['tokens', 'features'] as const)('forward matches the reference, %s mode', (mode) => {
  const all = optionMatrix(mode, mode === 'tokens' ? 101 : 202);

  test('the matrix covers 2,880 combinations', () => {
    expect(all.length).toBe(2880);
  });

  const parts = chunks(all, 360);
  test.each(parts.map((p, i) => [i, p] as const))(
    `shape ${MATRIX_SHAPE.join('x')}, cases %i`,
    (i, part) => {
      const failures = checkCases(part, MATRIX_SHAPE, 1000 * i + 7);
      expect(failures, failures.slice(0, 5).join('\n')).toEqual([]);
    },
  );

  test('shape 2x5x9 and 4x3x4, every 7th combination', () => {
    for (const shape of [
      [2, 5, 9],
      [4, 3, 4],
    ] as TestShape[]) {
      const cases = optionMatrix(mode, 303, shape).filter((_, k) => k % 7 === 0);
      const failures = checkCases(cases, shape, 99);
      expect(failures, failures.slice(0, 5).join('\n')).toEqual([]);
    }
  });

  test('defaults match the reference with every option left out', () => {
    const shape: TestShape = [2, 6, 5];
    const x = randomArray(60, 17);
    const { y } = contraNorm(x, shape, mode === 'tokens' ? { backend: 'cpu' } : cpu({ mode }));
    const bad = mismatches(y, referenceForward(x, shape, { mode }), FORWARD_TOL);
    expect(bad).toEqual([]);
  });

  test('a length-1 scale vector acts as the scalar', () => {
    const shape: TestShape = [2, 6, 5];
    const x = randomArray(60, 18);
    const a = contraNorm(x, shape, cpu({ mode, scale: 0.3 })).y;
    const b = contraNorm(x, shape, cpu({ mode, scale: Float32Array.of(0.3) })).y;
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  test('saveForBackward false returns the same y and no context', () => {
    const shape: TestShape = [2, 6, 5];
    const x = randomArray(60, 19);
    const a = contraNorm(x, shape, cpu({ mode, dualNorm: true }));
    const b = contraNorm(x, shape, cpu({ mode, dualNorm: true, saveForBackward: false }));
    expect(b.saved).toBeNull();
    expect(a.saved).not.toBeNull();
    expect(Array.from(b.y)).toEqual(Array.from(a.y));
  });

  test("precision 'tf32' is accepted on the CPU path and stays within the fp32 tolerance", () => {
    const shape: TestShape = [2, 6, 5];
    const x = randomArray(60, 20);
    const { y } = contraNorm(x, shape, cpu({ mode, precision: 'tf32' }));
    expect(mismatches(y, referenceForward(x, shape, { mode }), FORWARD_TOL)).toEqual([]);
  });
});
