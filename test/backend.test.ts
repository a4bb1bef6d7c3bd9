/**
 * Backend choice as seen from a machine without a usable GPU: `auto` runs the CPU path and
 * says why, `cuda` is an error and never a silent fallback, and `CONTRANORM_BACKEND` is obeyed.
 * Where CUDA does run these cases skip, saying so; the CUDA suites cover that side.
 */
import { afterEach, describe, expect, test } from 'vitest';

import { backendInfo, ContraNormError, contraNorm, contraNormAsync } from '../lib/index.ts';
import { expectSameBits } from './helpers.ts';
import { randomArray } from './random.ts';

const info = backendInfo();
const noCuda = info.backend === 'cpu';
const SHAPE: [number, number, number] = [2, 4, 3];
const x = randomArray(24, 161);

describe.skipIf(!noCuda)(`without CUDA (here: ${info.backend})`, () => {
  const env = process.env.CONTRANORM_BACKEND;
  afterEach(() => {
    if (env === undefined) delete process.env.CONTRANORM_BACKEND;
    else process.env.CONTRANORM_BACKEND = env;
  });

  test('backendInfo says cpu and gives a reason', () => {
    expect(info.backend).toBe('cpu');
    expect(typeof info.reason).toBe('string');
    expect(info.reason!.length).toBeGreaterThan(0);
    expect(info.device).toBeUndefined();
  });

  test('auto runs the CPU path with the same bits as cpu', () => {
    delete process.env.CONTRANORM_BACKEND;
    const auto = contraNorm(x, SHAPE);
    const cpu = contraNorm(x, SHAPE, { backend: 'cpu' });
    expect(auto.saved!.backend).toBe('cpu');
    expectSameBits(auto.y, cpu.y, 'y');
  });

  test("backend 'cuda' is a ContraNormError with a stable code, sync and async", async () => {
    let err: unknown;
    try {
      contraNorm(x, SHAPE, { backend: 'cuda' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ContraNormError);
    expect((err as ContraNormError).code).toBe('ERR_CONTRANORM_BACKEND_UNAVAILABLE');
    expect((err as Error).message).toMatch(/cuda/);
    await expect(contraNormAsync(x, SHAPE, { backend: 'cuda' })).rejects.toBeInstanceOf(
      ContraNormError,
    );
  });

  test('CONTRANORM_BACKEND picks the backend when the call does not', () => {
    process.env.CONTRANORM_BACKEND = 'cuda';
    expect(() => contraNorm(x, SHAPE)).toThrow(ContraNormError);
    // the call's own choice wins over the environment
    expect(contraNorm(x, SHAPE, { backend: 'cpu' }).saved!.backend).toBe('cpu');
    process.env.CONTRANORM_BACKEND = 'cpu';
    expect(contraNorm(x, SHAPE).saved!.backend).toBe('cpu');
    process.env.CONTRANORM_BACKEND = '';
    expect(contraNorm(x, SHAPE).saved!.backend).toBe('cpu');
  });
});
