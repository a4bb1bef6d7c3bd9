/**
 * Bad input: each case asserts the exact error class (TypeError or RangeError), that the
 * message names the argument and what was expected, and that no input changed, bit for bit.
 */
import { describe, expect, test } from 'vitest';

import { ContraNorm, ContraNormError, contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormOptions, ContraNormSaved } from '../lib/index.ts';
import { bytesOf, cpu, detach, guardInputs } from './helpers.ts';
import { randomArray } from './random.ts';

type ErrorClass = typeof TypeError | typeof RangeError;

/**
 * Runs `fn`, asserting it throws exactly `cls` (not a subclass) with a stable code and a
 * message `<argument>: expected ..., received ...` that matches `name`; then that nothing in
 * `guarded` changed.
 */
function expectArgError(fn: () => unknown, cls: ErrorClass, name: RegExp, guarded: unknown[]) {
  const guard = guardInputs(...guarded);
  let thrown: unknown = undefined;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, 'it throws').toBeDefined();
  const err = thrown as Error & { code?: string };
  expect(err.constructor, `${err.constructor?.name}: ${err.message}`).toBe(cls);
  expect(err.message).toMatch(name);
  expect(err.message).toMatch(/: expected .+, received .+/);
  expect(err.code).toMatch(/^ERR_CONTRANORM_/);
  guard.check();
}

const SHAPE: [number, number, number] = [2, 3, 4];
const x = () => randomArray(24, 1);

interface Case {
  name: string;
  cls: ErrorClass;
  arg: RegExp;
  /** The inputs: `[x, shape, options]`. */
  make: () => [unknown, unknown, unknown?];
}

const forwardCases: Case[] = [
  // x
  {
    name: 'x as Float64Array',
    cls: TypeError,
    arg: /^x: .*Float32Array.*Float64Array/,
    make: () => [Float64Array.from(x()), SHAPE],
  },
  {
    name: 'x as plain Array',
    cls: TypeError,
    arg: /^x: .*Float32Array.*Array of length 24/,
    make: () => [Array.from(x()), SHAPE],
  },
  {
    name: 'x as Uint8Array',
    cls: TypeError,
    arg: /^x: .*Float32Array.*Uint8Array/,
    make: () => [new Uint8Array(24), SHAPE],
  },
  { name: 'x as null', cls: TypeError, arg: /^x: .*Float32Array.*null/, make: () => [null, SHAPE] },
  {
    name: 'x too short',
    cls: RangeError,
    arg: /^x: .*length 24.*length 23/,
    make: () => [x().subarray(0, 23), SHAPE],
  },
  {
    name: 'x too long',
    cls: RangeError,
    arg: /^x: .*length 24.*length 25/,
    make: () => [new Float32Array(25), SHAPE],
  },

  // shape
  {
    name: 'shape as a string',
    cls: TypeError,
    arg: /^shape: .*three non-negative integers/,
    make: () => [x(), '2,3,4'],
  },
  {
    name: 'shape of two numbers',
    cls: TypeError,
    arg: /^shape: .*three non-negative integers/,
    make: () => [x(), [6, 4]],
  },
  {
    name: 'shape of four numbers',
    cls: TypeError,
    arg: /^shape: .*three non-negative integers/,
    make: () => [x(), [1, 2, 3, 4]],
  },
  {
    name: 'shape as a typed array',
    cls: TypeError,
    arg: /^shape: /,
    make: () => [x(), Int32Array.of(2, 3, 4)],
  },
  {
    name: 'negative shape entry',
    cls: RangeError,
    arg: /^shape\[0\]: .*non-negative integer.*-2/,
    make: () => [x(), [-2, 3, 4]],
  },
  {
    name: 'fractional shape entry',
    cls: RangeError,
    arg: /^shape\[1\]: .*non-negative integer.*1\.5/,
    make: () => [x(), [2, 1.5, 8]],
  },
  {
    name: 'NaN shape entry',
    cls: RangeError,
    arg: /^shape\[2\]: .*NaN/,
    make: () => [x(), [2, 3, NaN]],
  },
  {
    name: 'Infinity shape entry',
    cls: RangeError,
    arg: /^shape\[2\]: .*Infinity/,
    make: () => [x(), [2, 3, Infinity]],
  },
  {
    name: 'string shape entry',
    cls: TypeError,
    arg: /^shape\[1\]: .*"3"/,
    make: () => [x(), [2, '3', 4]],
  },

  // options object and unknown keys
  {
    name: 'options as a number',
    cls: TypeError,
    arg: /^options: .*object/,
    make: () => [x(), SHAPE, 3],
  },
  {
    name: 'options as an array',
    cls: TypeError,
    arg: /^options: .*object/,
    make: () => [x(), SHAPE, []],
  },
  {
    name: 'unknown option key',
    cls: TypeError,
    arg: /^options\.temprature: /,
    make: () => [x(), SHAPE, { temprature: 1 }],
  },
  {
    name: 'unknown layerNorm key',
    cls: TypeError,
    arg: /^options\.layerNorm\.gain: /,
    make: () => [x(), SHAPE, { layerNorm: { gain: new Float32Array(4) } }],
  },

  // temperature
  {
    name: 'temperature 0',
    cls: RangeError,
    arg: /^options\.temperature: .*finite positive.*received 0/,
    make: () => [x(), SHAPE, { temperature: 0 }],
  },
  {
    name: 'temperature negative',
    cls: RangeError,
    arg: /^options\.temperature: .*-1/,
    make: () => [x(), SHAPE, { temperature: -1 }],
  },
  {
    name: 'temperature NaN',
    cls: RangeError,
    arg: /^options\.temperature: .*NaN/,
    make: () => [x(), SHAPE, { temperature: NaN }],
  },
  {
    name: 'temperature Infinity',
    cls: RangeError,
    arg: /^options\.temperature: .*Infinity/,
    make: () => [x(), SHAPE, { temperature: Infinity }],
  },
  {
    name: 'temperature as a string',
    cls: TypeError,
    arg: /^options\.temperature: .*"1"/,
    make: () => [x(), SHAPE, { temperature: '1' }],
  },

  // scale
  {
    name: 'scale vector of the wrong length',
    cls: RangeError,
    arg: /^options\.scale: .*length 1 or D = 4.*length 3/,
    make: () => [x(), SHAPE, { scale: new Float32Array(3) }],
  },
  {
    name: 'scale as Float64Array',
    cls: TypeError,
    arg: /^options\.scale: .*Float64Array/,
    make: () => [x(), SHAPE, { scale: new Float64Array(4) }],
  },
  {
    name: 'scale as plain Array',
    cls: TypeError,
    arg: /^options\.scale: .*Array of length 4/,
    make: () => [x(), SHAPE, { scale: [0.1, 0.1, 0.1, 0.1] }],
  },
  {
    name: 'scale NaN',
    cls: RangeError,
    arg: /^options\.scale: .*finite.*NaN/,
    make: () => [x(), SHAPE, { scale: NaN }],
  },
  {
    name: 'scale vector holding Infinity',
    cls: RangeError,
    arg: /^options\.scale\[2\]: .*finite.*Infinity/,
    make: () => [x(), SHAPE, { scale: Float32Array.of(1, 1, Infinity, 1) }],
  },
  {
    name: "scale 0 with scaleParam 'exp'",
    cls: RangeError,
    arg: /^options\.scale: .*positive.*0/,
    make: () => [x(), SHAPE, { scale: 0, scaleParam: 'exp' }],
  },
  {
    name: "negative scale entry with scaleParam 'exp'",
    cls: RangeError,
    arg: /^options\.scale\[1\]: .*positive.*-0\.5/,
    make: () => [x(), SHAPE, { scale: Float32Array.of(0.1, -0.5, 0.1, 0.1), scaleParam: 'exp' }],
  },
  {
    name: 'unknown scaleParam',
    cls: RangeError,
    arg: /^options\.scaleParam: .*'linear' or 'exp'.*"log"/,
    make: () => [x(), SHAPE, { scaleParam: 'log' }],
  },

  // mask
  {
    name: 'mask of the wrong size',
    cls: RangeError,
    arg: /^options\.mask: .*length N\*N = 9 or B\*N\*N = 18.*length 10/,
    make: () => [x(), SHAPE, { mask: new Uint8Array(10) }],
  },
  {
    name: 'mask sized for tokens in features mode',
    cls: RangeError,
    arg: /^options\.mask: .*D\*D = 16.*length 9/,
    make: () => [x(), SHAPE, { mode: 'features', mask: new Uint8Array(9) }],
  },
  {
    name: 'mask as Int8Array',
    cls: TypeError,
    arg: /^options\.mask: .*Uint8Array.*Int8Array/,
    make: () => [x(), SHAPE, { mask: new Int8Array(9) }],
  },
  {
    name: 'mask as Uint8ClampedArray',
    cls: TypeError,
    arg: /^options\.mask: .*Uint8ClampedArray/,
    make: () => [x(), SHAPE, { mask: new Uint8ClampedArray(9) }],
  },
  {
    name: 'mask array of numbers',
    cls: TypeError,
    arg: /^options\.mask\[0\]: .*boolean.*1/,
    make: () => [x(), SHAPE, { mask: [1, 0, 0, 0, 0, 0, 0, 0, 0] }],
  },
  {
    name: 'boolean mask of the wrong size',
    cls: RangeError,
    arg: /^options\.mask: .*Array of length 4/,
    make: () => [x(), SHAPE, { mask: [true, false, false, true] }],
  },

  // lengths
  {
    name: 'lengths of the wrong size',
    cls: RangeError,
    arg: /^options\.lengths: .*length B = 2.*length 3/,
    make: () => [x(), SHAPE, { lengths: [3, 3, 3] }],
  },
  {
    name: 'lengths entry past N',
    cls: RangeError,
    arg: /^options\.lengths\[1\]: .*\[0, N = 3\].*4/,
    make: () => [x(), SHAPE, { lengths: [3, 4] }],
  },
  {
    name: 'negative lengths entry',
    cls: RangeError,
    arg: /^options\.lengths\[0\]: .*-1/,
    make: () => [x(), SHAPE, { lengths: Int32Array.of(-1, 2) }],
  },
  {
    name: 'Uint32Array lengths entry past N',
    cls: RangeError,
    arg: /^options\.lengths\[0\]: .*4294967295/,
    make: () => [x(), SHAPE, { lengths: Uint32Array.of(2 ** 32 - 1, 2) }],
  },
  {
    name: 'fractional lengths entry',
    cls: RangeError,
    arg: /^options\.lengths\[0\]: .*integer.*1\.5/,
    make: () => [x(), SHAPE, { lengths: [1.5, 2] }],
  },
  {
    name: 'lengths as Float32Array',
    cls: TypeError,
    arg: /^options\.lengths: .*Float32Array/,
    make: () => [x(), SHAPE, { lengths: Float32Array.of(1, 2) }],
  },
  {
    name: 'lengths entry as a string',
    cls: TypeError,
    arg: /^options\.lengths\[1\]: .*"2"/,
    make: () => [x(), SHAPE, { lengths: [1, '2'] }],
  },

  // layerNorm
  {
    name: 'layerNorm as a string',
    cls: TypeError,
    arg: /^options\.layerNorm: /,
    make: () => [x(), SHAPE, { layerNorm: 'on' }],
  },
  {
    name: 'layerNorm weight of the wrong length',
    cls: RangeError,
    arg: /^options\.layerNorm\.weight: .*length 4.*length 5/,
    make: () => [x(), SHAPE, { layerNorm: { weight: new Float32Array(5) } }],
  },
  {
    name: 'layerNorm bias as Float64Array',
    cls: TypeError,
    arg: /^options\.layerNorm\.bias: .*Float32Array.*Float64Array/,
    make: () => [x(), SHAPE, { layerNorm: { bias: new Float64Array(4) } }],
  },
  {
    name: 'layerNorm eps 0',
    cls: RangeError,
    arg: /^options\.layerNorm\.eps: .*0/,
    make: () => [x(), SHAPE, { layerNorm: { eps: 0 } }],
  },
  {
    name: 'layerNorm eps NaN',
    cls: RangeError,
    arg: /^options\.layerNorm\.eps: .*NaN/,
    make: () => [x(), SHAPE, { layerNorm: { eps: NaN } }],
  },

  // the other options
  {
    name: 'eps 0',
    cls: RangeError,
    arg: /^options\.eps: .*finite positive.*0/,
    make: () => [x(), SHAPE, { eps: 0 }],
  },
  {
    name: 'eps Infinity',
    cls: RangeError,
    arg: /^options\.eps: .*Infinity/,
    make: () => [x(), SHAPE, { eps: Infinity }],
  },
  {
    name: 'unknown mode',
    cls: RangeError,
    arg: /^options\.mode: .*'tokens' or 'features'.*"rows"/,
    make: () => [x(), SHAPE, { mode: 'rows' }],
  },
  {
    name: 'mode as a number',
    cls: TypeError,
    arg: /^options\.mode: /,
    make: () => [x(), SHAPE, { mode: 1 }],
  },
  {
    name: 'identity as a number',
    cls: TypeError,
    arg: /^options\.identity: .*boolean.*1/,
    make: () => [x(), SHAPE, { identity: 1 }],
  },
  {
    name: 'dualNorm as a string',
    cls: TypeError,
    arg: /^options\.dualNorm: .*boolean/,
    make: () => [x(), SHAPE, { dualNorm: 'yes' }],
  },
  {
    name: 'preNorm as null',
    cls: TypeError,
    arg: /^options\.preNorm: .*boolean.*null/,
    make: () => [x(), SHAPE, { preNorm: null }],
  },
  {
    name: 'saveForBackward as a number',
    cls: TypeError,
    arg: /^options\.saveForBackward: /,
    make: () => [x(), SHAPE, { saveForBackward: 0 }],
  },
  {
    name: 'unknown precision',
    cls: RangeError,
    arg: /^options\.precision: .*'fp32' or 'tf32'.*"fp16"/,
    make: () => [x(), SHAPE, { precision: 'fp16' }],
  },
  {
    name: 'unknown backend',
    cls: RangeError,
    arg: /^options\.backend: .*'auto' or 'cuda' or 'cpu'.*"gpu"/,
    make: () => [x(), SHAPE, { backend: 'gpu' }],
  },

  // out
  {
    name: 'out of the wrong length',
    cls: RangeError,
    arg: /^options\.out: .*length 24.*length 12/,
    make: () => [x(), SHAPE, { out: new Float32Array(12) }],
  },
  {
    name: 'out as Float64Array',
    cls: TypeError,
    arg: /^options\.out: .*Float64Array/,
    make: () => [x(), SHAPE, { out: new Float64Array(24) }],
  },
  {
    name: 'out that is x',
    cls: RangeError,
    arg: /^options\.out: .*not overlap x/,
    make: () => {
      const v = x();
      return [v, SHAPE, { out: v }];
    },
  },
  {
    name: 'out overlapping x by one element',
    cls: RangeError,
    arg: /^options\.out: .*not overlap x/,
    make: () => {
      const buf = new Float32Array(47);
      buf.set(x());
      return [buf.subarray(0, 24), SHAPE, { out: buf.subarray(23, 47) }];
    },
  },
];

describe('forward rejects bad input', () => {
  test.each(forwardCases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const args = c.make();
    const keepArgs = args.map((a) => (Array.isArray(a) ? a.slice() : a));
    const o = args[2];
    // options that are not a plain object, or name a backend, go as they are; the others run
    // on the CPU path
    const plain = typeof o === 'object' && o !== null && !Array.isArray(o) && !('backend' in o);
    const options = plain ? cpu(o as ContraNormOptions) : o;
    const call = () => contraNorm(args[0] as Float32Array, args[1] as number[], options as never);
    expectArgError(call, c.cls, c.arg, args);
    expect(args[1]).toEqual(keepArgs[1]);
  });

  test('a bad option is reported before the backend runs, also for the CUDA backend', () => {
    const call = () => contraNorm(x(), SHAPE, { backend: 'cuda', temperature: -1 });
    expectArgError(call, RangeError, /^options\.temperature: /, []);
  });

  test('a bad CONTRANORM_BACKEND is a RangeError naming it', () => {
    const before = process.env.CONTRANORM_BACKEND;
    process.env.CONTRANORM_BACKEND = 'gpu';
    try {
      expectArgError(() => contraNorm(x(), SHAPE), RangeError, /^CONTRANORM_BACKEND: .*"gpu"/, []);
    } finally {
      if (before === undefined) delete process.env.CONTRANORM_BACKEND;
      else process.env.CONTRANORM_BACKEND = before;
    }
  });
});

describe('detached buffers', () => {
  const detachedCases: { name: string; arg: RegExp; make: () => [Float32Array, object] }[] = [
    {
      name: 'x',
      arg: /^x: .*live buffer.*detached/,
      make: () => {
        const v = x();
        detach(v);
        return [v, {}];
      },
    },
    ...(['scale', 'out'] as const).map((key) => ({
      name: `options.${key}`,
      arg: new RegExp(`^options\\.${key}: .*live buffer.*detached`),
      make: (): [Float32Array, object] => {
        const v = new Float32Array(key === 'out' ? 24 : 4).fill(0.1);
        detach(v);
        return [x(), { [key]: v }];
      },
    })),
    ...(['weight', 'bias'] as const).map((key) => ({
      name: `options.layerNorm.${key}`,
      arg: new RegExp(`^options\\.layerNorm\\.${key}: .*live buffer.*detached`),
      make: (): [Float32Array, object] => {
        const v = new Float32Array(4).fill(1);
        detach(v);
        return [x(), { layerNorm: { [key]: v } }];
      },
    })),
    {
      name: 'options.mask',
      arg: /^options\.mask: .*live buffer.*detached/,
      make: () => {
        const v = new Uint8Array(9);
        detach(v);
        return [x(), { mask: v }];
      },
    },
    {
      name: 'options.lengths',
      arg: /^options\.lengths: .*live buffer.*detached/,
      make: () => {
        const v = Int32Array.of(3, 3);
        detach(v);
        return [x(), { lengths: v }];
      },
    },
  ];

  test.each(detachedCases.map((c) => [c.name, c] as const))(
    'detached %s is a TypeError',
    (_, c) => {
      const [input, options] = c.make();
      expectArgError(() => contraNorm(input, SHAPE, cpu(options)), TypeError, c.arg, [
        input,
        options,
      ]);
    },
  );

  test('detached dy is a TypeError', () => {
    const { saved } = contraNorm(x(), SHAPE, cpu());
    const dy = new Float32Array(24);
    detach(dy);
    expectArgError(() => contraNormBackward(dy, saved!), TypeError, /^dy: .*detached/, []);
  });
});

describe('backward rejects bad input', () => {
  function context(): { saved: ContraNormSaved; dy: Float32Array } {
    const { saved } = contraNorm(x(), SHAPE, cpu({ layerNorm: { bias: new Float32Array(4) } }));
    return { saved: saved!, dy: randomArray(24, 2) };
  }

  test('dy as Float64Array', () => {
    const { saved, dy } = context();
    const bad = Float64Array.from(dy);
    expectArgError(
      () => contraNormBackward(bad as never, saved),
      TypeError,
      /^dy: .*Float32Array.*Float64Array/,
      [bad],
    );
  });

  test('dy as plain Array', () => {
    const { saved, dy } = context();
    const bad = Array.from(dy);
    expectArgError(
      () => contraNormBackward(bad as never, saved),
      TypeError,
      /^dy: .*Float32Array/,
      [bad],
    );
  });

  test('dy whose shape differs from the saved context', () => {
    const { saved } = context();
    const dy = randomArray(20, 3);
    expectArgError(
      () => contraNormBackward(dy, saved),
      RangeError,
      /^dy: .*length B\*N\*D = 24 of the saved shape \[2, 3, 4\].*length 20/,
      [dy],
    );
    const longer = randomArray(48, 3);
    expectArgError(
      () => contraNormBackward(longer, saved),
      RangeError,
      /^dy: .*\[2, 3, 4\].*length 48/,
      [longer],
    );
  });

  test('saved that is not a context', () => {
    const dy = randomArray(24, 2);
    expectArgError(() => contraNormBackward(dy, {} as never), TypeError, /^saved: .*context/, [dy]);
    expectArgError(() => contraNormBackward(dy, null as never), TypeError, /^saved: .*null/, [dy]);
  });

  test('out of the wrong length, of the wrong type, or overlapping dy', () => {
    const { saved, dy } = context();
    const short = new Float32Array(23);
    expectArgError(
      () => contraNormBackward(dy, saved, { out: short }),
      RangeError,
      /^options\.out: .*length 24/,
      [dy, short],
    );
    const f64 = new Float64Array(24);
    expectArgError(
      () => contraNormBackward(dy, saved, { out: f64 as never }),
      TypeError,
      /^options\.out: .*Float64Array/,
      [dy, f64],
    );
    expectArgError(
      () => contraNormBackward(dy, saved, { out: dy }),
      RangeError,
      /^options\.out: .*not overlap dy/,
      [dy],
    );
  });

  test('unknown backward option', () => {
    const { saved, dy } = context();
    expectArgError(
      () => contraNormBackward(dy, saved, { scale: 1 } as never),
      TypeError,
      /^options\.scale: /,
      [dy],
    );
  });

  test('a disposed context is a ContraNormError with a stable code', () => {
    const { saved, dy } = context();
    saved.dispose();
    expect(saved.disposed).toBe(true);
    const guard = guardInputs(dy);
    let err: unknown;
    try {
      contraNormBackward(dy, saved);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ContraNormError);
    expect((err as ContraNormError).code).toBe('ERR_CONTRANORM_DISPOSED');
    expect((err as Error).message).toMatch(/^saved: /);
    guard.check();
    saved.dispose(); // a second dispose is harmless
  });

  test('a bad call leaves the context usable', () => {
    const { saved, dy } = context();
    const before = contraNormBackward(dy, saved).dx;
    expect(() => contraNormBackward(new Float32Array(3), saved)).toThrow(RangeError);
    const after = contraNormBackward(dy, saved).dx;
    expect(bytesOf(after)).toEqual(bytesOf(before));
  });
});

describe('layer rejects bad input', () => {
  test('dim that is not a positive integer', () => {
    expectArgError(() => new ContraNorm(0), RangeError, /^dim: .*positive integer.*0/, []);
    expectArgError(() => new ContraNorm(2.5), RangeError, /^dim: .*2\.5/, []);
    expectArgError(() => new ContraNorm('4' as never), TypeError, /^dim: .*"4"/, []);
  });

  test('initial scale of the wrong length or sign', () => {
    const s = new Float32Array(3).fill(0.1);
    expectArgError(
      () => new ContraNorm(4, { scale: s }),
      RangeError,
      /^options\.scale: .*length 4/,
      [s],
    );
    expectArgError(
      () => new ContraNorm(4, { scale: -1, scaleParam: 'exp' }),
      RangeError,
      /^options\.scale: .*positive/,
      [],
    );
  });

  test('forward with a D that differs from dim', () => {
    const layer = new ContraNorm(4, { backend: 'cpu' });
    const input = randomArray(30, 1);
    expectArgError(() => layer.forward(input, [2, 3, 5]), RangeError, /^shape\[2\]: .*D = 4.*5/, [
      input,
    ]);
  });
});
