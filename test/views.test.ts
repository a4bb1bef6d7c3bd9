/**
 * Memory: views with a non-zero byteOffset and arrays over a SharedArrayBuffer give the same
 * bits as fresh copies, for every input and option buffer; `out` buffers are used as given;
 * no input is ever written to, forward or backward.
 */
import { describe, expect, test } from 'vitest';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormOptions } from '../lib/index.ts';
import { cpu, expectSameBits, guardInputs } from './helpers.ts';
import { randomArray } from './random.ts';
import type { TestShape } from './random.ts';

const MODES = ['tokens', 'features'] as const;
const SHAPE: TestShape = [3, 5, 4];

type Backing = 'offset' | 'shared' | 'shared+offset';

/** A copy of `a` placed in a larger buffer of the given kind, `pad` elements in. */
function placed<T extends Float32Array | Uint8Array | Int32Array>(a: T, backing: Backing): T {
  const Ctor = a.constructor as { new (buf: ArrayBufferLike, off: number, len: number): T };
  const pad = 3;
  const bytes = (a.length + 2 * pad) * a.BYTES_PER_ELEMENT;
  const buf = backing === 'offset' ? new ArrayBuffer(bytes) : new SharedArrayBuffer(bytes);
  const off = backing === 'shared' ? 0 : pad * a.BYTES_PER_ELEMENT;
  const view = new Ctor(buf, off, a.length);
  new Uint8Array(buf).fill(0x7f); // garbage around the view: NaN-like floats, large ints
  view.set(a as never);
  return view;
}

/** Options with every buffer-valued field set, for the given mode. */
function fullOptions(mode: 'tokens' | 'features'): ContraNormOptions {
  const [B, N, D] = SHAPE;
  const M = mode === 'tokens' ? N : D;
  return {
    mode,
    scale: randomArray(D, 81, 0.3),
    dualNorm: true,
    identity: true,
    lengths: Int32Array.of(5, 0, 3),
    mask: Uint8Array.from({ length: B * M * M }, (_, k) => (k % 5 === 2 ? 1 : 0)),
    layerNorm: { weight: randomArray(D, 82), bias: randomArray(D, 83) },
  };
}

function placeOptions(o: ContraNormOptions, backing: Backing): ContraNormOptions {
  const ln = o.layerNorm as { weight: Float32Array; bias: Float32Array };
  return {
    ...o,
    scale: placed(o.scale as Float32Array, backing),
    lengths: placed(o.lengths as Int32Array, backing),
    mask: placed(o.mask as Uint8Array, backing),
    layerNorm: { weight: placed(ln.weight, backing), bias: placed(ln.bias, backing) },
  };
}

describe.each(MODES)('views and shared memory, %s mode', (mode) => {
  const n = SHAPE[0] * SHAPE[1] * SHAPE[2];
  const x = randomArray(n, 84);
  const dy = randomArray(n, 85);
  const o = fullOptions(mode);
  const fresh = contraNorm(x, SHAPE, cpu(o));
  const freshGrads = contraNormBackward(dy, fresh.saved!);

  test.each(['offset', 'shared', 'shared+offset'] as const)(
    'x, dy and every option buffer as %s views give the same bits',
    (backing) => {
      const xv = placed(x, backing);
      const dyv = placed(dy, backing);
      const ov = placeOptions(o, backing);
      const guard = guardInputs(xv, dyv, ov);
      const run = contraNorm(xv, SHAPE, cpu(ov));
      expectSameBits(run.y, fresh.y, 'y');
      const g = contraNormBackward(dyv, run.saved!);
      expectSameBits(g.dx, freshGrads.dx, 'dx');
      expectSameBits(g.dScale, freshGrads.dScale, 'dScale');
      expectSameBits(g.dWeight!, freshGrads.dWeight!, 'dWeight');
      expectSameBits(g.dBias!, freshGrads.dBias!, 'dBias');
      guard.check();
      // the bytes around each view were not touched either
      for (const view of [xv, dyv, ov.scale as Float32Array, ov.mask as Uint8Array]) {
        const all = new Uint8Array(view.buffer);
        const end = view.byteOffset + view.byteLength;
        const outside = [...all.subarray(0, view.byteOffset), ...all.subarray(end)];
        expect(outside.every((v) => v === 0x7f)).toBe(true);
      }
    },
  );

  test.each(['offset', 'shared', 'shared+offset'] as const)(
    'out buffers as %s views receive y and dx',
    (backing) => {
      const out = placed(new Float32Array(n).fill(Number.NaN), backing);
      const dxOut = placed(new Float32Array(n).fill(Number.NaN), backing);
      const run = contraNorm(x, SHAPE, cpu({ ...o, out }));
      expect(run.y).toBe(out);
      expectSameBits(out, fresh.y, 'y');
      const g = contraNormBackward(dy, run.saved!, { out: dxOut });
      expect(g.dx).toBe(dxOut);
      expectSameBits(dxOut, freshGrads.dx, 'dx');
    },
  );

  test('out beside x in one buffer, and dx beside dy, are allowed', () => {
    const buf = new Float32Array(2 * n);
    buf.set(x);
    const xv = buf.subarray(0, n);
    const out = buf.subarray(n);
    const run = contraNorm(xv, SHAPE, cpu({ ...o, out }));
    expect(run.y).toBe(out);
    expectSameBits(out, fresh.y, 'y');
    expectSameBits(xv, x, 'x');
    const gbuf = new Float32Array(2 * n);
    gbuf.set(dy, n);
    const g = contraNormBackward(gbuf.subarray(n), run.saved!, { out: gbuf.subarray(0, n) });
    expectSameBits(g.dx, freshGrads.dx, 'dx');
    expectSameBits(gbuf.subarray(n), dy, 'dy');
  });

  test('a previous y fed back as x, and a previous dx as dy, work like copies', () => {
    const y2 = contraNorm(fresh.y, SHAPE, cpu(o));
    const copy = contraNorm(fresh.y.slice(), SHAPE, cpu(o));
    expectSameBits(y2.y, copy.y, 'y');
  });

  test('no input is written to by forward, backward or their out variants', () => {
    const ov = fullOptions(mode);
    const xs = x.slice();
    const dys = dy.slice();
    const guard = guardInputs(xs, dys, ov);
    const run = contraNorm(xs, SHAPE, cpu(ov));
    contraNormBackward(dys, run.saved!);
    contraNormBackward(dys, run.saved!, { out: new Float32Array(n) });
    contraNorm(xs, SHAPE, cpu({ ...ov, out: new Float32Array(n), saveForBackward: false }));
    guard.check();
  });

  test('the saved context keeps its own copies of the options', () => {
    const ov = fullOptions(mode);
    const run = contraNorm(x, SHAPE, cpu(ov));
    // overwrite every option buffer after the forward call
    (ov.scale as Float32Array).fill(5);
    (ov.lengths as Int32Array).fill(1);
    (ov.mask as Uint8Array).fill(1);
    const ln = ov.layerNorm as { weight: Float32Array; bias: Float32Array };
    ln.weight.fill(-3);
    ln.bias.fill(9);
    const g = contraNormBackward(dy, run.saved!);
    expectSameBits(g.dx, freshGrads.dx, 'dx');
    expectSameBits(g.dScale, freshGrads.dScale, 'dScale');
    expectSameBits(g.dWeight!, freshGrads.dWeight!, 'dWeight');
  });
});

test('an out buffer with garbage in it is fully overwritten', () => {
  const x = randomArray(60, 86);
  const plain = contraNorm(x, SHAPE, cpu({ lengths: [2, 5, 0] })).y;
  const out = new Float32Array(60).fill(Number.NaN);
  contraNorm(x, SHAPE, cpu({ lengths: [2, 5, 0], out }));
  expectSameBits(out, plain, 'y');
});
