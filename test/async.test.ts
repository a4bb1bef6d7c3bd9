/**
 * The Promise twins: the same bits as the synchronous calls, concurrent calls that do not
 * interfere, and bad input reported as a rejected Promise rather than a synchronous throw.
 */
import { describe, expect, test } from 'vitest';

import {
  ContraNormError,
  contraNorm,
  contraNormAsync,
  contraNormBackward,
  contraNormBackwardAsync,
} from '../lib/index.ts';
import type { ContraNormOptions } from '../lib/index.ts';
import { cpu, expectSameBits, guardInputs } from './helpers.ts';
import { optionMatrix, randomArray, sampleOf } from './random.ts';
import type { TestShape } from './random.ts';

const SHAPE: TestShape = [3, 7, 6];
const n = 126;

describe.each(['tokens', 'features'] as const)('async twins, %s mode', (mode) => {
  test('give the same bits as the synchronous calls over sampled options', async () => {
    for (const [k, o] of sampleOf(optionMatrix(mode, 111), 24, 112).entries()) {
      const x = randomArray(n, 113 + k);
      const dy = randomArray(n, 213 + k);
      const guard = guardInputs(x, dy, o);
      const sync = contraNorm(x, SHAPE, cpu(o));
      const syncGrads = contraNormBackward(dy, sync.saved!);
      const run = await contraNormAsync(x, SHAPE, cpu(o));
      expectSameBits(run.y, sync.y, 'y');
      expect(run.saved!.shape).toEqual(SHAPE);
      const g = await contraNormBackwardAsync(dy, run.saved!);
      expectSameBits(g.dx, syncGrads.dx, 'dx');
      expectSameBits(g.dScale, syncGrads.dScale, 'dScale');
      expect(g.dWeight === undefined).toBe(syncGrads.dWeight === undefined);
      if (g.dWeight) expectSameBits(g.dWeight, syncGrads.dWeight!, 'dWeight');
      expect(g.dBias === undefined).toBe(syncGrads.dBias === undefined);
      if (g.dBias) expectSameBits(g.dBias, syncGrads.dBias!, 'dBias');
      // an async context serves a sync backward, and the other way round
      expectSameBits(contraNormBackward(dy, run.saved!).dx, syncGrads.dx, 'sync from async');
      expectSameBits((await contraNormBackwardAsync(dy, sync.saved!)).dx, syncGrads.dx, 'async');
      guard.check();
    }
  });

  test('out buffers and saveForBackward false', async () => {
    const x = randomArray(n, 120);
    const dy = randomArray(n, 121);
    const o: ContraNormOptions = { mode, dualNorm: true };
    const sync = contraNorm(x, SHAPE, cpu(o));
    const out = new Float32Array(n);
    const run = await contraNormAsync(x, SHAPE, cpu({ ...o, out }));
    expect(run.y).toBe(out);
    expectSameBits(out, sync.y, 'y');
    const dxOut = new Float32Array(n);
    const g = await contraNormBackwardAsync(dy, run.saved!, { out: dxOut });
    expect(g.dx).toBe(dxOut);
    const inference = await contraNormAsync(x, SHAPE, cpu({ ...o, saveForBackward: false }));
    expect(inference.saved).toBeNull();
    expectSameBits(inference.y, sync.y, 'y');
  });

  test('concurrent calls give what sequential calls give', async () => {
    const inputs = Array.from({ length: 8 }, (_, k) => randomArray(n, 130 + k));
    const options = sampleOf(optionMatrix(mode, 131), 8, 132);
    const sequential = inputs.map((x, k) => contraNorm(x, SHAPE, cpu(options[k])).y);
    const together = await Promise.all(
      inputs.map((x, k) => contraNormAsync(x, SHAPE, cpu(options[k]))),
    );
    together.forEach((r, k) => expectSameBits(r.y, sequential[k], `call ${k}`));
    const dys = inputs.map((_, k) => randomArray(n, 140 + k));
    const grads = await Promise.all(
      together.map((r, k) => contraNormBackwardAsync(dys[k], r.saved!)),
    );
    grads.forEach((g, k) => {
      const want = contraNormBackward(dys[k], together[k].saved!);
      expectSameBits(g.dx, want.dx, `backward ${k}`);
    });
  });
});

describe('async bad input rejects', () => {
  const x = randomArray(n, 150);

  /** Calls `fn` and asserts it returns a Promise (no throw) that rejects with `cls`. */
  async function expectRejects(fn: () => Promise<unknown>, cls: Function, message: RegExp) {
    let promise: Promise<unknown> | undefined;
    expect(() => {
      promise = fn();
    }, 'no synchronous throw').not.toThrow();
    expect(promise).toBeInstanceOf(Promise);
    const err = await promise!.then(
      () => expect.fail('the Promise resolved'),
      (e: unknown) => e,
    );
    expect((err as Error).constructor).toBe(cls);
    expect((err as Error).message).toMatch(message);
  }

  test('forward: wrong array type, shape, temperature, mask, out', async () => {
    const guard = guardInputs(x);
    await expectRejects(
      () => contraNormAsync(Float64Array.from(x) as never, SHAPE, cpu()),
      TypeError,
      /^x: /,
    );
    await expectRejects(() => contraNormAsync(x, [3, 7, 5], cpu()), RangeError, /^x: /);
    await expectRejects(() => contraNormAsync(x, [3, -7, 6], cpu()), RangeError, /^shape\[1\]: /);
    await expectRejects(
      () => contraNormAsync(x, SHAPE, cpu({ temperature: 0 })),
      RangeError,
      /^options\.temperature: /,
    );
    await expectRejects(
      () => contraNormAsync(x, SHAPE, cpu({ mask: new Uint8Array(5) })),
      RangeError,
      /^options\.mask: /,
    );
    await expectRejects(
      () => contraNormAsync(x, SHAPE, cpu({ out: x })),
      RangeError,
      /^options\.out: /,
    );
    guard.check();
  });

  test('backward: dy of another shape, not a context, disposed context', async () => {
    const { saved } = await contraNormAsync(x, SHAPE, cpu());
    const short = new Float32Array(n - 6);
    await expectRejects(() => contraNormBackwardAsync(short, saved!), RangeError, /^dy: /);
    await expectRejects(
      () => contraNormBackwardAsync(new Float32Array(n), {} as never),
      TypeError,
      /^saved: /,
    );
    saved!.dispose();
    await expectRejects(
      () => contraNormBackwardAsync(new Float32Array(n), saved!),
      ContraNormError,
      /^saved: /,
    );
  });
});
