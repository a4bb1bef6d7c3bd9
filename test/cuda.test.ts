/**
 * The CUDA path against the float64 reference and the TypeScript path over the same generated
 * option matrix, forward and backward; then sizes that pick each softmax kernel (a warp per row,
 * a block per row with the row on chip, a block per row read twice), awkward (N, D) pairs, fully
 * excluded rows and columns, zero rows, extreme temperatures, zero sizes and tf32. Every case
 * skips, with the reason in its name, where CUDA cannot run.
 */
import { describe, expect, test } from 'vitest';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormGrads, ContraNormOptions } from '../lib/index.ts';
import { numericGrads } from './gradcheck.ts';
import { allFinite, cpu, expectClose, gradFailures } from './helpers.ts';
import type { Tolerance } from './helpers.ts';
import {
  closeFailures,
  cuda,
  CUDA_FORWARD_TOL,
  CUDA_GRAD_TOL,
  CUDA_LONG_TOL,
  gpu,
  where,
} from './cuda-setup.ts';
import {
  batchedMask,
  describeOptions,
  MATRIX_SHAPE,
  optionMatrix,
  randomArray,
  Rng,
  sampleOf,
  sharedMask,
} from './random.ts';
import type { TestShape } from './random.ts';
import { referenceForward } from './reference.ts';

/** Forward and backward of one call on CUDA and on the TypeScript path. */
function both(x: Float32Array, shape: TestShape, o: ContraNormOptions, dy: Float32Array) {
  const g = contraNorm(x, shape, cuda(o));
  const c = contraNorm(x, shape, cpu(o));
  expect(g.saved!.backend).toBe('cuda');
  const gg = contraNormBackward(dy, g.saved!);
  const cg = contraNormBackward(dy, c.saved!);
  g.saved!.dispose();
  return { gy: g.y, cy: c.y, gg, cg };
}

/** Failures of one call's forward and backward on CUDA against the TypeScript path. */
function againstCpu(
  x: Float32Array,
  shape: TestShape,
  o: ContraNormOptions,
  dy: Float32Array,
  tol: { forward: Tolerance; grad: Tolerance },
  label: string,
): string[] {
  const { gy, cy, gg, cg } = both(x, shape, o, dy);
  return [
    ...closeFailures(gy, cy, tol.forward, `${label} y`),
    ...gradFailures(gg, cg, tol.grad, label),
  ];
}

const TOL = { forward: CUDA_FORWARD_TOL, grad: CUDA_GRAD_TOL };
const LONG = { forward: CUDA_LONG_TOL, grad: CUDA_LONG_TOL };

describe.skipIf(!gpu)(`CUDA path (${where})`, () => {
  describe.each(['tokens', 'features'] as const)('%s mode, option matrix', (mode) => {
    const shape = MATRIX_SHAPE;
    const [B, N, D] = shape;
    const options = optionMatrix(mode, mode === 'tokens' ? 31 : 32);

    test(`forward of all ${options.length} combinations against the reference and the TypeScript path`, () => {
      const rng = new Rng(41);
      const failures: string[] = [];
      for (const o of options) {
        const x = randomArray(B * N * D, rng.int(0, 2 ** 30), rng.pick([0.5, 1, 2]));
        const { y } = contraNorm(x, shape, cuda({ ...o, saveForBackward: false }));
        const label = describeOptions(o);
        failures.push(
          ...closeFailures(
            y,
            referenceForward(x, shape, o),
            CUDA_FORWARD_TOL,
            `${label} vs reference`,
          ),
        );
        failures.push(
          ...closeFailures(
            y,
            contraNorm(x, shape, cpu(o)).y,
            CUDA_FORWARD_TOL,
            `${label} vs TypeScript`,
          ),
        );
      }
      expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
    });

    test(`backward of all ${options.length} combinations against the TypeScript path`, () => {
      const rng = new Rng(42);
      const failures: string[] = [];
      for (const o of options) {
        const x = randomArray(B * N * D, rng.int(0, 2 ** 30), rng.pick([0.5, 1, 2]));
        const dy = randomArray(B * N * D, rng.int(0, 2 ** 30));
        failures.push(...againstCpu(x, shape, o, dy, TOL, describeOptions(o)));
      }
      expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
    });

    test('backward of 96 sampled combinations against central differences', () => {
      const small: TestShape = [2, 4, 5];
      const rng = new Rng(43);
      const failures: string[] = [];
      for (const o of sampleOf(optionMatrix(mode, 44, small), 96, 45)) {
        const x = randomArray(40, rng.int(0, 2 ** 30));
        const dy = randomArray(40, rng.int(0, 2 ** 30));
        const { saved } = contraNorm(x, small, cuda(o));
        const got: ContraNormGrads = contraNormBackward(dy, saved!);
        saved!.dispose();
        failures.push(
          ...gradFailures(got, numericGrads(x, small, o, dy), CUDA_GRAD_TOL, describeOptions(o)),
        );
      }
      expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
    });
  });

  describe('every softmax kernel: sizes around 32, 1024, 4096 and past them', () => {
    const NS = [
      1, 2, 3, 31, 32, 33, 127, 128, 129, 1000, 1023, 1024, 1025, 2047, 2049, 4095, 4097, 8193,
    ];

    test.each(NS)('tokens, N = %i, defaults and every option, against the TypeScript path', (N) => {
      const B = N <= 1025 ? 2 : 1;
      const D = 8;
      const shape: TestShape = [B, N, D];
      const rng = new Rng(N);
      const x = randomArray(B * N * D, rng.int(0, 2 ** 30));
      const dy = randomArray(B * N * D, rng.int(0, 2 ** 30));
      const all: ContraNormOptions = {
        identity: true,
        dualNorm: true,
        scale: randomArray(D, rng.int(0, 2 ** 30), 0.3),
        temperature: 0.5,
        lengths: B === 2 ? [N, Math.max(0, N - 7)] : [Math.max(1, N - 3)],
        mask: sharedMask(N, rng),
        layerNorm: { weight: randomArray(D, rng.int(0, 2 ** 30)), bias: randomArray(D, 5) },
      };
      const tol = N > 1025 ? LONG : TOL;
      const failures = [
        ...againstCpu(x, shape, {}, dy, tol, `N = ${N} defaults`),
        ...againstCpu(x, shape, all, dy, tol, `N = ${N} every option`),
      ];
      if (N <= 129) {
        failures.push(
          ...closeFailures(
            contraNorm(x, shape, cuda(all)).y,
            referenceForward(x, shape, all),
            CUDA_FORWARD_TOL,
            `N = ${N} vs reference`,
          ),
        );
      }
      expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
    });

    test.each([1, 3, 33, 768, 1025, 4097])('features, D = %i, against the TypeScript path', (D) => {
      const shape: TestShape = [2, 5, D];
      const rng = new Rng(100 + D);
      const x = randomArray(10 * D, rng.int(0, 2 ** 30));
      const dy = randomArray(10 * D, rng.int(0, 2 ** 30));
      const all: ContraNormOptions = {
        mode: 'features',
        dualNorm: true,
        preNorm: true,
        lengths: [5, 3],
        mask: batchedMask(2, D, rng),
      };
      const tol = D > 1025 ? LONG : TOL;
      const failures = [
        ...againstCpu(x, shape, { mode: 'features' }, dy, tol, `D = ${D} defaults`),
        ...againstCpu(x, shape, all, dy, tol, `D = ${D} every option`),
      ];
      expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
    });
  });

  describe.each(['tokens', 'features'] as const)('%s mode, awkward shapes', (mode) => {
    const PAIRS: [number, number][] = [
      [3, 5],
      [5, 3],
      [1, 7],
      [7, 1],
      [33, 17],
    ];
    test.each(PAIRS)('(N, D) = (%i, %i), 24 sampled combinations', (N, D) => {
      const shape: TestShape = [3, N, D];
      const rng = new Rng(N * 100 + D);
      const failures: string[] = [];
      for (const o of sampleOf(optionMatrix(mode, N + D, shape), 24, N * D)) {
        const x = randomArray(3 * N * D, rng.int(0, 2 ** 30));
        const dy = randomArray(3 * N * D, rng.int(0, 2 ** 30));
        const label = `(${N}, ${D}) ${describeOptions(o)}`;
        failures.push(...againstCpu(x, shape, o, dy, TOL, label));
        const { y } = contraNorm(x, shape, cuda({ ...o, saveForBackward: false }));
        failures.push(
          ...closeFailures(
            y,
            referenceForward(x, shape, o),
            CUDA_FORWARD_TOL,
            `${label} vs reference`,
          ),
        );
      }
      expect(failures, failures.slice(0, 6).join('\n')).toEqual([]);
    });
  });

  describe('edge cases', () => {
    test.each(['tokens', 'features'] as const)(
      '%s: every entry excluded gives P = 0, never NaN',
      (mode) => {
        const shape: TestShape = [2, 6, 5];
        const M = mode === 'tokens' ? 6 : 5;
        const x = randomArray(60, 7);
        const dy = randomArray(60, 8);
        for (const dualNorm of [false, true]) {
          const o: ContraNormOptions = { mode, dualNorm, mask: new Uint8Array(M * M).fill(1) };
          const { gy, cy, gg, cg } = both(x, shape, o, dy);
          expect(allFinite(gy) && allFinite(gg.dx) && allFinite(gg.dScale)).toBe(true);
          expectClose(gy, cy, CUDA_FORWARD_TOL, `dualNorm ${dualNorm} y`);
          expect(gradFailures(gg, cg, CUDA_GRAD_TOL, `dualNorm ${dualNorm}`)).toEqual([]);
        }
      },
    );

    test('zero rows and rows under eps take the clamped branch, as on the TypeScript path', () => {
      const shape: TestShape = [2, 5, 4];
      const x = randomArray(40, 9);
      x.fill(0, 4, 8);
      x.fill(1e-14, 24, 28);
      const dy = randomArray(40, 10);
      for (const preNorm of [false, true]) {
        const failures = againstCpu(
          x,
          shape,
          { preNorm, eps: 1e-12 },
          dy,
          TOL,
          `preNorm ${preNorm}`,
        );
        expect(failures).toEqual([]);
      }
    });

    test.each([1e-30, 1e-3, 1e3, 1e30])(
      'temperature %s stays finite and matches',
      (temperature) => {
        const shape: TestShape = [2, 9, 6];
        const x = randomArray(108, 11);
        const dy = randomArray(108, 12);
        const { gy, cy, gg, cg } = both(x, shape, { temperature, dualNorm: true }, dy);
        expect(allFinite(gy) && allFinite(gg.dx)).toBe(true);
        expectClose(gy, cy, CUDA_FORWARD_TOL, 'y');
        expect(gradFailures(gg, cg, CUDA_GRAD_TOL, `tau ${temperature}`)).toEqual([]);
      },
    );

    test.each([
      [0, 4, 3],
      [2, 0, 3],
      [2, 3, 0],
    ] as TestShape[])('shape [%i, %i, %i] gives empty results', (B, N, D) => {
      for (const mode of ['tokens', 'features'] as const) {
        const shape: TestShape = [B, N, D];
        const scale = new Float32Array(D).fill(0.2);
        const { y, saved } = contraNorm(
          new Float32Array(0),
          shape,
          cuda({ mode, scale: D > 0 ? scale : 0.2 }),
        );
        expect(y.length).toBe(0);
        const g = contraNormBackward(new Float32Array(0), saved!);
        expect(g.dx.length).toBe(0);
        expect(Array.from(g.dScale).every((v) => v === 0)).toBe(true);
      }
    });

    test('padding rows: y and dx exactly 0 whatever x and dy hold there', () => {
      const shape: TestShape = [2, 6, 4];
      const x = randomArray(48, 13);
      const dy = randomArray(48, 14);
      x.fill(Number.NaN, 4 * 4, 24);
      dy.fill(Number.NaN, 4 * 4, 24);
      for (const mode of ['tokens', 'features'] as const) {
        const { y, saved } = contraNorm(x, shape, cuda({ mode, lengths: [4, 6], dualNorm: true }));
        const g = contraNormBackward(dy, saved!);
        expect(Array.from(y.subarray(16, 24))).toEqual(new Array(8).fill(0));
        expect(Array.from(g.dx.subarray(16, 24))).toEqual(new Array(8).fill(0));
        expect(allFinite(y) && allFinite(g.dx) && allFinite(g.dScale)).toBe(true);
      }
    });

    test("precision 'tf32' stays close to 'fp32'", () => {
      const shape: TestShape = [4, 256, 64];
      const x = randomArray(4 * 256 * 64, 15);
      const dy = randomArray(4 * 256 * 64, 16);
      const run = (precision: 'fp32' | 'tf32') => {
        const { y, saved } = contraNorm(x, shape, cuda({ precision, dualNorm: true }));
        return { y, g: contraNormBackward(dy, saved!) };
      };
      const f = run('fp32');
      const t = run('tf32');
      const loose = { abs: 1e-2, rel: 1e-2, relMax: 1e-2 };
      expectClose(t.y, f.y, loose, 'y');
      expectClose(t.g.dx, f.g.dx, loose, 'dx');
    });
  });
});
