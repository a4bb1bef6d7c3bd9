/**
 * The limits of what a call accepts, and what the layer class refuses: shapes too large for the
 * CPU path, zero sizes with huge other dimensions, numbers outside float32's range, unknown
 * option names, contexts passed to the wrong layer, buffers detached after an async call.
 */
import { describe, expect, test } from 'vitest';

import {
  ContraNorm,
  ContraNormError,
  ContraNormSaved,
  contraNorm,
  contraNormAsync,
  contraNormBackward,
  contraNormBackwardAsync,
} from '../lib/index.ts';
import type { ContraNormOptions, Shape } from '../lib/index.ts';
import { cpu, expectSameBits } from './helpers.ts';
import { randomArray } from './random.ts';

const SHAPE: Shape = [2, 3, 4];
const x = randomArray(24, 1);

function rejects(options: ContraNormOptions, Kind: typeof TypeError, name: RegExp) {
  const err = (() => {
    try {
      contraNorm(x, SHAPE, cpu(options));
    } catch (e) {
      return e;
    }
    return null;
  })();
  expect(err).toBeInstanceOf(Kind);
  expect((err as Error).message).toMatch(name);
  expect((err as { code?: string }).code).toMatch(/^ERR_CONTRANORM_/);
}

describe('shapes', () => {
  test('a zero size returns at once, however large the other dimensions', () => {
    for (const shape of [
      [2 ** 31, 1, 0],
      [2 ** 31, 0, 4],
      [1, 70000, 0],
      [1, 0, 70000],
      [2 ** 30, 2 ** 30, 0],
    ] as Shape[]) {
      for (const mode of ['tokens', 'features'] as const) {
        const t0 = performance.now();
        const { y, saved } = contraNorm(new Float32Array(0), shape, cpu({ mode }));
        const g = contraNormBackward(new Float32Array(0), saved!);
        expect(y.length).toBe(0);
        expect(g.dx.length).toBe(0);
        expect(Array.from(g.dScale)).toEqual([0]);
        expect(performance.now() - t0).toBeLessThan(1000);
      }
    }
  });

  test('a shape whose P outgrows one typed array is a RangeError naming the shape', () => {
    const big = new Float32Array(40000).fill(1);
    expect(() => contraNorm(big, [1, 40000, 1], cpu())).toThrow(
      expect.objectContaining({
        name: 'RangeError',
        code: 'ERR_CONTRANORM_SHAPE',
        message: expect.stringMatching(/^shape: .*\[1, 40000, 1\] in tokens mode/),
      }),
    );
  });
});

describe('numbers outside float32', () => {
  test('temperature and eps must be normal float32 values', () => {
    for (const t of [1e-310, 5e-324, 1e-39, 1e39]) {
      rejects({ temperature: t }, RangeError, /^options\.temperature: /);
    }
    for (const e of [1e-39, 1e-45]) rejects({ eps: e }, RangeError, /^options\.eps: /);
    rejects({ layerNorm: { eps: 1e-40 } }, RangeError, /^options\.layerNorm\.eps: /);
  });

  test('a scale that float32 rounds to infinity, or to 0 under exp, is refused with its value', () => {
    rejects({ scale: 1e39 }, RangeError, /^options\.scale: .*received 1e\+39$/);
    rejects({ scale: 1e-50, scaleParam: 'exp' }, RangeError, /received 1e-50$/);
    rejects({ scale: Float64Array.of(1) as never }, TypeError, /^options\.scale: /);
  });

  test('LayerNorm weight and bias must be finite', () => {
    const bad = new Float32Array(4).fill(1);
    bad[2] = NaN;
    rejects({ layerNorm: { weight: bad } }, RangeError, /^options\.layerNorm\.weight\[2\]: /);
    rejects({ layerNorm: { bias: bad } }, RangeError, /^options\.layerNorm\.bias\[2\]: /);
  });
});

describe('names', () => {
  test('an unknown option lists the known ones', () => {
    rejects(
      { sacle: 1 } as never,
      TypeError,
      /^options\.sacle: expected one of .*scale, scaleParam/,
    );
    rejects({ layerNorm: { wieght: 1 } } as never, TypeError, /options\.layerNorm\.wieght: .*bias/);
  });

  test('errors and contexts are recognised by brand, not by the module copy', () => {
    expect(new ContraNormError('ERR_CONTRANORM_CUDA', 'x')).toBeInstanceOf(ContraNormError);
    expect(new Error('x')).not.toBeInstanceOf(ContraNormError);
    expect({}).not.toBeInstanceOf(ContraNormSaved);
    const { saved } = contraNorm(x, SHAPE, cpu());
    expect(saved).toBeInstanceOf(ContraNormSaved);
    expect(() => contraNormBackward(x, { shape: SHAPE } as never)).toThrow(/^saved: /);
  });
});

describe('async calls read their inputs before they return', () => {
  test('detaching x or dy right after the call changes nothing', async () => {
    const want = contraNorm(x, SHAPE, cpu());
    const wantGrads = contraNormBackward(x, want.saved!);

    const x2 = x.slice();
    const pending = contraNormAsync(x2, SHAPE, cpu());
    structuredClone(x2.buffer, { transfer: [x2.buffer] });
    const got = await pending;
    expectSameBits(got.y, want.y, 'y');

    const dy = x.slice();
    const grads = contraNormBackwardAsync(dy, got.saved!);
    structuredClone(dy.buffer, { transfer: [dy.buffer] });
    const gotGrads = await grads;
    expectSameBits(gotGrads.dx, wantGrads.dx, 'dx');
    expectSameBits(gotGrads.dScale, wantGrads.dScale, 'dScale');
  });
});

describe('the layer class', () => {
  test('unknown or invalid options are refused when the layer is made', () => {
    expect(() => new ContraNorm(4, { sacle: 1 } as never)).toThrow(/^options\.sacle: /);
    expect(() => new ContraNorm(4, { lengths: [1] } as never)).toThrow(/^options\.lengths: /);
    expect(() => new ContraNorm(4, { layerNorm: { afine: false } } as never)).toThrow(
      /^options\.layerNorm\.afine: /,
    );
    expect(() => new ContraNorm(4, { temperature: -1 })).toThrow(RangeError);
    expect(() => new ContraNorm(4, { mode: 'x' as never })).toThrow(/^options\.mode: /);
  });

  test('option values are checked as the function checks them, named as the layer names them', () => {
    const affine = { layerNorm: { affine: 0 } } as never;
    expect(() => new ContraNorm(4, affine)).toThrow(/^options\.layerNorm\.affine: /);
    expect(() => new ContraNorm(4, { scale: null } as never)).toThrow(TypeError);
    expect(() => new ContraNorm(4, { layerNorm: null } as never)).toThrow(TypeError);
    expect(() => new ContraNorm(4, { scale: 1e39 })).toThrow(/received 1e\+39$/);

    const layer = new ContraNorm(4);
    layer.weight!.value[1] = NaN;
    expect(() => layer.forward(x, SHAPE)).toThrow(/^weight\.value\[1\]: /);
    const exp = new ContraNorm(4, { scaleParam: 'exp' });
    exp.scale.value[0] = 200;
    expect(() => exp.forward(x, SHAPE)).toThrow(/^scale\.value: /);
  });

  test('a scale of length 1 is one scalar parameter', () => {
    const layer = new ContraNorm(4, { scale: Float32Array.of(0.3) });
    expect(layer.scale.value.length).toBe(1);
    expect(layer.scale.value[0]).toBeCloseTo(0.3, 6);
  });

  test('a call takes only per-call options', () => {
    const layer = new ContraNorm(4);
    expect(() => layer.forward(x, SHAPE, { scale: 1 } as never)).toThrow(/^call\.scale: /);
    expect(() =>
      layer.forward(x, SHAPE, { lengths: [3, 1], saveForBackward: false }),
    ).not.toThrow();
  });

  test("backward takes only this layer's own contexts, and leaves grads untouched otherwise", () => {
    const a = new ContraNorm(4, { scale: new Float32Array(4).fill(0.1) });
    const b = new ContraNorm(4, { layerNorm: false });
    const foreign = [b.forward(x, SHAPE).saved!, contraNorm(x, SHAPE, cpu()).saved!];
    for (const saved of foreign) {
      expect(() => a.backward(x, saved)).toThrow(
        expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/^saved: /) }),
      );
    }
    for (const p of a.parameters()) expect(p.grad.every((v) => v === 0)).toBe(true);
    const own = a.forward(x, SHAPE).saved!;
    a.backward(x, own);
    expect(a.scale.grad.every(Number.isFinite)).toBe(true);
  });
});
