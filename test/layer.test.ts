/**
 * The `ContraNorm` class: its parameter list, gradient accumulation and reset, agreement with
 * the functional API and with central differences, and a few SGD steps that lower a toy loss.
 */
import { describe, expect, test } from 'vitest';

import { ContraNorm, contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormLayerOptions } from '../lib/index.ts';
import { numericGrads } from './gradcheck.ts';
import { allFinite, expectClose, expectSameBits, GRAD_TOL } from './helpers.ts';
import { randomArray } from './random.ts';
import type { TestShape } from './random.ts';

const SHAPE: TestShape = [3, 6, 5];
const n = 90;

function layer(options: ContraNormLayerOptions = {}): ContraNorm {
  return new ContraNorm(5, { backend: 'cpu', ...options });
}

/** `0.5 * ||y - target||^2` and its gradient for y. */
function squaredError(y: Float32Array, target: Float32Array): { loss: number; dy: Float32Array } {
  let loss = 0;
  const dy = new Float32Array(y.length);
  for (let k = 0; k < y.length; k++) {
    const r = y[k] - target[k];
    loss += 0.5 * r * r;
    dy[k] = r;
  }
  return { loss, dy };
}

describe('parameters', () => {
  test('default: a scalar scale, a LayerNorm weight of ones and a bias of zeros', () => {
    const params = layer().parameters();
    expect(params.map((p) => p.name)).toEqual(['scale', 'weight', 'bias']);
    expect(Array.from(params[0].value)).toEqual([Math.fround(0.1)]);
    expect(Array.from(params[1].value)).toEqual([1, 1, 1, 1, 1]);
    expect(Array.from(params[2].value)).toEqual([0, 0, 0, 0, 0]);
    for (const p of params) {
      expect(p.grad.length).toBe(p.value.length);
      expect(Array.from(p.grad).every((v) => v === 0)).toBe(true);
    }
  });

  test('a per-channel scale, without affine LayerNorm, without LayerNorm', () => {
    const s = Float32Array.of(0.1, 0.2, 0.3, 0.4, 0.5);
    const a = layer({ scale: s, layerNorm: { affine: false } }).parameters();
    expect(a.map((p) => p.name)).toEqual(['scale']);
    expectSameBits(a[0].value, s, 'scale');
    expect(a[0].value).not.toBe(s); // a copy: the caller's array is not trained in place
    expect(
      layer({ layerNorm: false })
        .parameters()
        .map((p) => p.name),
    ).toEqual(['scale']);
  });

  test("scaleParam 'exp' stores log s", () => {
    const p = layer({ scale: 0.25, scaleParam: 'exp' }).scale;
    expect(p.value[0]).toBe(Math.fround(Math.log(0.25)));
  });
});

describe('forward and backward', () => {
  const x = randomArray(n, 91);
  const dy = randomArray(n, 92);

  test('match the functional API with the same values', () => {
    const l = layer({ dualNorm: true, identity: true, scale: 0.3 });
    l.weight!.value.set(randomArray(5, 93));
    l.bias!.value.set(randomArray(5, 94));
    const { y, saved } = l.forward(x, SHAPE, { lengths: [6, 2, 4] });
    const f = contraNorm(x, SHAPE, {
      backend: 'cpu',
      dualNorm: true,
      identity: true,
      scale: 0.3,
      lengths: [6, 2, 4],
      layerNorm: { weight: l.weight!.value, bias: l.bias!.value },
    });
    expectSameBits(y, f.y, 'y');
    const dx = l.backward(dy, saved!);
    const g = contraNormBackward(dy, f.saved!);
    expectSameBits(dx, g.dx, 'dx');
    expectSameBits(l.scale.grad, g.dScale, 'scale grad');
    expectSameBits(l.weight!.grad, g.dWeight!, 'weight grad');
    expectSameBits(l.bias!.grad, g.dBias!, 'bias grad');
  });

  test('gradients accumulate over backward calls until zeroGrad', () => {
    const l = layer({ scale: randomArray(5, 95, 0.2) });
    const { saved } = l.forward(x, SHAPE);
    l.backward(dy, saved!);
    const once = l.parameters().map((p) => p.grad.slice());
    l.backward(dy, saved!);
    l.parameters().forEach((p, k) => {
      expectSameBits(
        p.grad,
        once[k].map((v) => 2 * v),
        `${p.name} twice`,
      );
    });
    l.zeroGrad();
    for (const p of l.parameters()) expect(Array.from(p.grad).every((v) => v === 0)).toBe(true);
    l.backward(dy, saved!);
    l.parameters().forEach((p, k) => expectSameBits(p.grad, once[k], `${p.name} after zero`));
  });

  test('backward writes dx into a given out buffer', () => {
    const l = layer();
    const { saved } = l.forward(x, SHAPE);
    const out = new Float32Array(n);
    const dx = l.backward(dy, saved!, { out });
    expect(dx).toBe(out);
  });

  test.each(['linear', 'exp'] as const)(
    "parameter gradients match central differences, scaleParam '%s'",
    (scaleParam) => {
      for (const mode of ['tokens', 'features'] as const) {
        const l = layer({ mode, scaleParam, scale: Float32Array.of(0.1, 0.2, 0.3, 0.4, 0.5) });
        l.weight!.value.set(randomArray(5, 96));
        l.bias!.value.set(randomArray(5, 97));
        const { saved } = l.forward(x, SHAPE);
        const dx = l.backward(dy, saved!);
        const s = scaleParam === 'exp' ? l.scale.value.map(Math.exp) : l.scale.value;
        const want = numericGrads(
          x,
          SHAPE,
          {
            mode,
            scaleParam,
            scale: s,
            layerNorm: { weight: l.weight!.value, bias: l.bias!.value },
          },
          dy,
        );
        expectClose(dx, want.dx, GRAD_TOL, `${mode} dx`);
        expectClose(l.scale.grad, want.dScale, GRAD_TOL, `${mode} scale grad`);
        expectClose(l.weight!.grad, want.dWeight!, GRAD_TOL, `${mode} weight grad`);
        expectClose(l.bias!.grad, want.dBias!, GRAD_TOL, `${mode} bias grad`);
      }
    },
  );
});

describe('training', () => {
  const x = randomArray(n, 101);
  // a target made by the same layer with other parameters, so the loss can reach 0
  const teacher = layer({ scale: Float32Array.of(0.4, 0.1, 0.3, 0.2, 0.5), dualNorm: true });
  teacher.weight!.value.set(randomArray(5, 102, 0.3).map((v) => 1 + v));
  teacher.bias!.value.set(randomArray(5, 103, 0.3));
  const target = teacher.forward(x, SHAPE).y;

  test.each(['linear', 'exp'] as const)(
    "a few SGD steps lower a squared error, scaleParam '%s'",
    (scaleParam) => {
      const l = layer({ scale: new Float32Array(5).fill(0.05), scaleParam, dualNorm: true });
      // log s moves s by a factor s per unit step, so it takes a larger rate
      const lr = scaleParam === 'exp' ? 0.05 : 0.01;
      const losses: number[] = [];
      for (let step = 0; step < 25; step++) {
        l.zeroGrad();
        const { y, saved } = l.forward(x, SHAPE);
        const { loss, dy } = squaredError(y, target);
        losses.push(loss);
        l.backward(dy, saved!);
        for (const p of l.parameters()) {
          for (let i = 0; i < p.value.length; i++) p.value[i] -= lr * p.grad[i];
        }
      }
      expect(losses.every(Number.isFinite)).toBe(true);
      for (let k = 1; k < losses.length; k++) expect(losses[k]).toBeLessThan(losses[k - 1]);
      expect(losses[losses.length - 1]).toBeLessThan(0.5 * losses[0]);
    },
  );

  test("scaleParam 'exp' keeps s positive where a linear scale turns negative", () => {
    // the target is LayerNorm(x) with a negative step, so the loss pulls s below 0
    const target = layer({ scale: -0.5, layerNorm: { affine: false } }).forward(x, SHAPE).y;
    const run = (scaleParam: 'linear' | 'exp') => {
      const l = layer({ scale: 0.2, scaleParam, layerNorm: { affine: false } });
      for (let step = 0; step < 40; step++) {
        l.zeroGrad();
        const { y, saved } = l.forward(x, SHAPE);
        expect(allFinite(y)).toBe(true);
        l.backward(squaredError(y, target).dy, saved!);
        l.scale.value[0] -= 0.05 * l.scale.grad[0];
        const s = scaleParam === 'exp' ? Math.exp(l.scale.value[0]) : l.scale.value[0];
        if (scaleParam === 'exp') expect(s).toBeGreaterThan(0);
      }
      return scaleParam === 'exp' ? Math.exp(l.scale.value[0]) : l.scale.value[0];
    };
    expect(run('linear')).toBeLessThan(0);
    const s = run('exp');
    expect(s).toBeGreaterThan(0);
    expect(s).toBeLessThan(0.2);
  });
});
