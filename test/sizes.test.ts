/**
 * Awkward sizes: every N and D in {1, 2, 3, 31, 33, 65}, both modes, with the defaults and with
 * every option on; the forward against the reference, the gradients along random directions.
 * Then zero-size shapes, which return empty results without error.
 */
import { describe, expect, test } from 'vitest';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormOptions } from '../lib/index.ts';
import { numericDirectional } from './gradcheck.ts';
import { cpu, dot, FORWARD_TOL, mismatches } from './helpers.ts';
import { batchedMask, cyclingLengths, randomArray, Rng } from './random.ts';
import type { TestShape } from './random.ts';
import { referenceForward } from './reference.ts';

const SIZES = [1, 2, 3, 31, 33, 65];
const B = 3;

/** Every option on: vector exp scale, identity, dualNorm, preNorm, affine LayerNorm, masks. */
function everything(mode: 'tokens' | 'features', N: number, D: number, rng: Rng) {
  const M = mode === 'tokens' ? N : D;
  const o: ContraNormOptions = {
    mode,
    scale: randomArray(D, rng.int(0, 1e9), 0.1).map((v) => 0.2 + Math.abs(v)),
    scaleParam: 'exp',
    identity: true,
    dualNorm: true,
    preNorm: true,
    temperature: 0.7,
    layerNorm: { weight: randomArray(D, rng.int(0, 1e9)), bias: randomArray(D, rng.int(0, 1e9)) },
    lengths: cyclingLengths(B, N, rng),
    mask: batchedMask(B, M, rng),
  };
  return o;
}

/** `<grad, u>` of the analytic gradients against the differences of the reference along u. */
function directionalFailures(
  x: Float32Array,
  shape: TestShape,
  o: ContraNormOptions,
  rng: Rng,
): string[] {
  const [, , D] = shape;
  const n = x.length;
  const dy = randomArray(n, rng.int(0, 1e9));
  const { saved } = contraNorm(x, shape, cpu(o));
  const g = contraNormBackward(dy, saved!);
  const failures: string[] = [];
  const check = (label: string, have: number, size: number, want: number) => {
    if (!(Math.abs(have - want) <= 1e-6 + 5e-5 * size)) {
      failures.push(`${label}: analytic ${have}, differences ${want}`);
    }
  };
  const absDot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += Math.abs(a[i] * b[i]);
    return s;
  };

  // x
  const vx = randomArray(n, rng.int(0, 1e9));
  check('dx', dot(g.dx, vx), absDot(g.dx, vx), numericDirectional(x, shape, o, dy, vx));

  // parameters together
  const vs = randomArray(g.dScale.length, rng.int(0, 1e9));
  const dir: { scale: Float32Array; weight?: Float32Array; bias?: Float32Array } = { scale: vs };
  let have = dot(g.dScale, vs);
  let size = absDot(g.dScale, vs);
  if (g.dWeight) {
    dir.weight = randomArray(D, rng.int(0, 1e9));
    have += dot(g.dWeight, dir.weight);
    size += absDot(g.dWeight, dir.weight);
  }
  if (g.dBias) {
    dir.bias = randomArray(D, rng.int(0, 1e9));
    have += dot(g.dBias, dir.bias);
    size += absDot(g.dBias, dir.bias);
  }
  check('parameters', have, size, numericDirectional(x, shape, o, dy, dir));
  return failures;
}

describe.each(['tokens', 'features'] as const)('awkward sizes, %s mode', (mode) => {
  for (const N of SIZES) {
    test(`N = ${N}, D in {${SIZES.join(', ')}}`, () => {
      const rng = new Rng(N * 7 + (mode === 'tokens' ? 0 : 1000));
      const failures: string[] = [];
      for (const D of SIZES) {
        const shape: TestShape = [B, N, D];
        for (const [label, o] of [
          ['defaults', { mode }],
          ['everything', everything(mode, N, D, rng)],
        ] as const) {
          const x = randomArray(B * N * D, rng.int(0, 1e9));
          const { y } = contraNorm(x, shape, cpu(o));
          const bad = mismatches(y, referenceForward(x, shape, o), FORWARD_TOL);
          if (bad.length > 0) {
            const m = bad[0];
            failures.push(`D=${D} ${label}: y[${m.index}] got ${m.got} want ${m.want}`);
          }
          for (const f of directionalFailures(x, shape, o, rng)) {
            failures.push(`D=${D} ${label}: ${f}`);
          }
        }
      }
      expect(failures, failures.join('\n')).toEqual([]);
    });
  }
});

describe.each(['tokens', 'features'] as const)('zero-size shapes, %s mode', (mode) => {
  const shapes: TestShape[] = [
    [0, 4, 5],
    [2, 0, 5],
    [2, 4, 0],
    [0, 0, 0],
  ];
  test.each(shapes)('[%i, %i, %i] gives empty results', (b, n, d) => {
    const shape: TestShape = [b, n, d];
    const x = new Float32Array(0);
    const plain = contraNorm(x, shape, cpu({ mode }));
    expect(plain.y).toBeInstanceOf(Float32Array);
    expect(plain.y.length).toBe(0);
    const g = contraNormBackward(new Float32Array(0), plain.saved!);
    expect(g.dx.length).toBe(0);
    expect(Array.from(g.dScale)).toEqual([0]);

    // with vectors of length D and lengths of length B
    const o: ContraNormOptions = {
      mode,
      scale: new Float32Array(d).fill(0.2),
      identity: true,
      dualNorm: true,
      lengths: new Int32Array(b).fill(n),
      layerNorm: { weight: new Float32Array(d).fill(1), bias: new Float32Array(d) },
    };
    if (d === 1 || d === 0) o.scale = 0.2;
    const full = contraNorm(x, shape, cpu(o));
    expect(full.y.length).toBe(0);
    const h = contraNormBackward(new Float32Array(0), full.saved!);
    expect(h.dx.length).toBe(0);
    expect(Array.from(h.dScale)).toEqual(
      new Array(o.scale instanceof Float32Array ? d : 1).fill(0),
    );
    expect(h.dWeight?.length).toBe(d);
    expect(h.dBias?.length).toBe(d);
    expect(Array.from(h.dWeight!).every((v) => v === 0)).toBe(true);
  });
});
