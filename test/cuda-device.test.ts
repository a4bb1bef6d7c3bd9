/**
 * The CUDA path as a user meets it: DeviceTensor chains, the Promise forms, inputs never written,
 * views and shared memory read in place, two worker threads computing at once, the caching
 * allocator (no cudaMalloc on repeated calls, memory flat without manual disposal), out of memory
 * as an error the process survives, and a batch whose B*N*N passes 2^31. Every case skips, with
 * the reason in its name, where CUDA cannot run.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

import { describe, expect, test } from 'vitest';

import {
  backendInfo,
  ContraNormError,
  contraNorm,
  contraNormAsync,
  contraNormBackward,
  contraNormBackwardAsync,
  DeviceTensor,
} from '../lib/index.ts';
import type { ContraNormOptions } from '../lib/index.ts';
import { loadNative, packageRoot } from '../lib/native.ts';
import type { NativeAddon } from '../lib/native.ts';
import { planForward } from '../lib/validate.ts';
import { cuda, CUDA_FORWARD_TOL, gpu, where } from './cuda-setup.ts';
import { cpu, expectClose, expectSameBits, guardInputs } from './helpers.ts';
import { batchedMask, randomArray, Rng } from './random.ts';
import type { TestShape } from './random.ts';

const require = createRequire(import.meta.url);
const addon = loadNative().addon as NativeAddon;
const SHAPE: TestShape = [3, 16, 8];
const n = 3 * 16 * 8;
const OPTIONS: Omit<ContraNormOptions, 'out'> = {
  dualNorm: true,
  identity: true,
  lengths: [16, 9, 0],
};

describe.skipIf(!gpu)(`CUDA path, device memory and threads (${where})`, () => {
  describe('DeviceTensor', () => {
    test('upload and download keep every bit; shape and length are kept', () => {
      const data = randomArray(n, 1);
      const t = DeviceTensor.upload(data, SHAPE);
      expect(t.length).toBe(n);
      expect(t.shape).toEqual(SHAPE);
      expectSameBits(t.download(), data, 'download');
      const out = new Float32Array(n);
      expect(t.download(out)).toBe(out);
      t.dispose();
      expect(t.disposed).toBe(true);
      expect(() => t.download()).toThrow(ContraNormError);
    });

    test('forward and backward on device memory match the host path', () => {
      const x = randomArray(n, 2);
      const dy = randomArray(n, 3);
      const host = contraNorm(x, SHAPE, cuda(OPTIONS));
      const hostGrads = contraNormBackward(dy, host.saved!);

      const dx = DeviceTensor.upload(x, SHAPE);
      const ddy = DeviceTensor.upload(dy, SHAPE);
      const { y, saved } = contraNorm(dx, SHAPE, OPTIONS);
      expect(y).toBeInstanceOf(DeviceTensor);
      expect(y.shape).toEqual(SHAPE);
      expectClose(y.download(), host.y, { abs: 1e-6, rel: 1e-6 }, 'y');
      const g = contraNormBackward(ddy, saved!);
      expect(g.dx).toBeInstanceOf(DeviceTensor);
      expectClose(g.dx.download(), hostGrads.dx, { abs: 1e-6, rel: 1e-6 }, 'dx');
      expectClose(g.dScale, hostGrads.dScale, { abs: 1e-6, rel: 1e-6 }, 'dScale');

      // out buffers are used as given; a host dy works on a device context too
      const out = DeviceTensor.empty(n);
      expect(contraNorm(dx, SHAPE, { ...OPTIONS, out }).y).toBe(out);
      expectClose(out.download(), host.y, { abs: 1e-6, rel: 1e-6 }, 'out');
      expectClose(
        contraNormBackward(dy, saved!).dx,
        hostGrads.dx,
        { abs: 1e-6, rel: 1e-6 },
        'host dy',
      );
      for (const t of [dx, ddy, y, g.dx, out]) t.dispose();
      saved!.dispose();
      host.saved!.dispose();
    });

    test('the Promise forms give the same results', async () => {
      const x = DeviceTensor.upload(randomArray(n, 4), SHAPE);
      const dy = DeviceTensor.upload(randomArray(n, 5), SHAPE);
      const sync = contraNorm(x, SHAPE, OPTIONS);
      const syncGrads = contraNormBackward(dy, sync.saved!);
      const later = await contraNormAsync(x, SHAPE, OPTIONS);
      const laterGrads = await contraNormBackwardAsync(dy, later.saved!);
      expectSameBits(later.y.download(), sync.y.download(), 'y');
      expectSameBits(laterGrads.dx.download(), syncGrads.dx.download(), 'dx');
      expectSameBits(laterGrads.dScale, syncGrads.dScale, 'dScale');
    });

    test('a tensor a pending call writes cannot be used until that call settles', async () => {
      const x = DeviceTensor.upload(randomArray(n, 8), SHAPE);
      const out = DeviceTensor.empty(n, SHAPE);
      const busy = expect.objectContaining({ code: 'ERR_CONTRANORM_BUSY' });
      const pending = contraNormAsync(x, SHAPE, { ...OPTIONS, out });
      expect(() => out.download()).toThrow(busy);
      expect(() => contraNorm(out, SHAPE, OPTIONS)).toThrow(busy);
      await expect(contraNormAsync(x, SHAPE, { ...OPTIONS, out })).rejects.toThrow(busy);

      // reading x from two calls at once is fine; after settling, out is free again
      const second = await contraNormAsync(x, SHAPE, OPTIONS);
      const first = await pending;
      expectSameBits(first.y.download(), second.y.download(), 'y');
      for (const t of [x, out, second.y]) t.dispose();
    });

    test('misuse is refused: out = x, the CPU backend, a CPU context, a disposed tensor', () => {
      const x = DeviceTensor.upload(randomArray(n, 6), SHAPE);
      expect(() => contraNorm(x, SHAPE, { out: x })).toThrow(RangeError);
      expect(() => contraNorm(x, SHAPE, { backend: 'cpu' })).toThrow(/options\.backend/);
      const { saved } = contraNorm(randomArray(n, 7), SHAPE, cpu());
      expect(() => contraNormBackward(x, saved!)).toThrow(TypeError);
      expect(() => contraNorm(x, [3, 16, 9])).toThrow(RangeError);
      x.dispose();
      expect(() => contraNorm(x, SHAPE)).toThrow(
        expect.objectContaining({ code: 'ERR_CONTRANORM_DISPOSED' }),
      );
    });
  });

  test('inputs are never written, sync and async', async () => {
    const rng = new Rng(8);
    const x = randomArray(n, 9);
    const dy = randomArray(n, 10);
    const o: ContraNormOptions = {
      ...OPTIONS,
      scale: randomArray(8, 11, 0.2),
      mask: batchedMask(3, 16, rng),
      layerNorm: { weight: randomArray(8, 12), bias: randomArray(8, 13) },
    };
    const guard = guardInputs(x, dy, o);
    const { saved } = contraNorm(x, SHAPE, cuda(o));
    contraNormBackward(dy, saved!);
    const later = await contraNormAsync(x, SHAPE, cuda(o));
    await contraNormBackwardAsync(dy, later.saved!);
    guard.check();
  });

  test('views with a byteOffset and SharedArrayBuffer backing are read in place', () => {
    const x = randomArray(n, 14);
    const want = contraNorm(x, SHAPE, cuda(OPTIONS)).y;
    const padded = new Float32Array(n + 3);
    padded.set(x, 3);
    expectSameBits(contraNorm(padded.subarray(3), SHAPE, cuda(OPTIONS)).y, want, 'view');
    const shared = new Float32Array(new SharedArrayBuffer(4 * n));
    shared.set(x);
    expectSameBits(contraNorm(shared, SHAPE, cuda(OPTIONS)).y, want, 'shared');
    const out = new Float32Array(n + 5);
    contraNorm(x, SHAPE, cuda({ ...OPTIONS, out: out.subarray(5) }));
    expectSameBits(out.subarray(5), want, 'out view');
  });

  test('the Promise form leaves the event loop free', async () => {
    const shape: TestShape = [8, 2048, 128];
    const x = randomArray(8 * 2048 * 128, 15);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    const { saved } = await contraNormAsync(x, shape, cuda({ dualNorm: true }));
    const elapsed = performance.now() - started;
    clearInterval(timer);
    saved!.dispose();
    console.log(`async forward [8, 2048, 128]: ${elapsed.toFixed(1)} ms, ${ticks} timer ticks`);
    if (elapsed > 20) expect(ticks).toBeGreaterThan(0);
  });

  test('two worker threads compute at once, each as the main thread does', async () => {
    const x = randomArray(n, 16);
    const dy = randomArray(n, 17);
    const { plan } = planForward(x, SHAPE, cuda(OPTIONS));
    const y = new Float32Array(n);
    const dx = new Float32Array(n);
    const saved = addon.forward(x, plan, y)!;
    const grads = addon.backward(dy, saved, dx);
    saved.release();

    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const file = process.env.CONTRANORM_NATIVE_PATH;
      const addon = file
        ? require(require('node:path').resolve(file))
        : require(workerData.gypBuild)(workerData.root);
      const { x, dy, plan, reps } = workerData;
      let y, dx, grads;
      for (let r = 0; r < reps; r++) {
        y = new Float32Array(x.length);
        dx = new Float32Array(x.length);
        const saved = addon.forward(x, plan, y);
        grads = addon.backward(dy, saved, dx);
        saved.release();
      }
      parentPort.postMessage({ y, dx, dScale: grads.dScale });
    `;
    const workerData = {
      gypBuild: require.resolve('node-gyp-build'),
      root: packageRoot,
      x,
      dy,
      plan,
      reps: 200,
    };
    const results = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<{ y: Float32Array; dx: Float32Array; dScale: Float32Array }>(
            (resolve, reject) => {
              const w = new Worker(code, { eval: true, workerData });
              w.once('message', (m) => {
                resolve(m);
                void w.terminate();
              });
              w.once('error', reject);
            },
          ),
      ),
    );
    for (const r of results) {
      expectClose(r.y, y, { abs: 1e-6, rel: 1e-6 }, 'worker y');
      expectClose(r.dx, dx, { abs: 1e-6, rel: 1e-6 }, 'worker dx');
      expectClose(r.dScale, grads.dScale, { abs: 1e-6, rel: 1e-6 }, 'worker dScale');
    }
  });

  describe('the caching allocator', () => {
    const x = randomArray(4 * 64 * 32, 18);
    const dy = randomArray(4 * 64 * 32, 19);
    const shape: TestShape = [4, 64, 32];

    test('repeated calls do not call cudaMalloc', () => {
      const once = () => {
        const { saved } = contraNorm(x, shape, cuda({ dualNorm: true }));
        contraNormBackward(dy, saved!);
        saved!.dispose();
      };
      for (let i = 0; i < 5; i++) once();
      const before = addon.memoryStats();
      for (let i = 0; i < 100; i++) once();
      const after = addon.memoryStats();
      expect(after.mallocCalls).toBe(before.mallocCalls);
      expect(after.allocatedBytes).toBe(before.allocatedBytes);
    });

    test('device memory stays flat over 2,000 forward+backward calls without manual disposal', async () => {
      const reserved: number[] = [];
      for (let i = 1; i <= 2000; i++) {
        const { saved } = contraNorm(x, shape, cuda({ dualNorm: true }));
        contraNormBackward(dy, saved!);
        if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
        if (i % 500 === 0) reserved.push(addon.memoryStats().reservedBytes);
      }
      const mib = reserved.map((b) => (b / 2 ** 20).toFixed(1));
      console.log(`reserved after 500, 1000, 1500, 2000 calls: ${mib.join(', ')} MiB`);
      expect(reserved[3]).toBeLessThanOrEqual(reserved[1] * 1.25 + 16 * 2 ** 20);
      expect(reserved[3]).toBeLessThan(1024 * 2 ** 20);
    });
  });

  test('out of memory is an error naming the bytes; the next call runs', () => {
    const memory = backendInfo().memory!;
    const N = 8192;
    const B = Math.ceil((1.5 * memory) / (4 * N * N));
    const bytes = 4 * B * N * N;
    const x = randomArray(B * N, 20);
    const before = addon.memoryStats().allocatedBytes;
    let caught: unknown;
    try {
      contraNorm(x, [B, N, 1], cuda({ saveForBackward: false }));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ContraNormError);
    expect((caught as ContraNormError).code).toBe('ERR_CONTRANORM_OUT_OF_MEMORY');
    expect((caught as Error).message).toContain(String(bytes));
    expect((caught as { bytes?: number }).bytes).toBe(bytes);
    expect(addon.memoryStats().allocatedBytes).toBe(before);
    const small = randomArray(n, 21);
    expectClose(
      contraNorm(small, SHAPE, cuda()).y,
      contraNorm(small, SHAPE, cpu()).y,
      CUDA_FORWARD_TOL,
      'after',
    );
  });

  test.skipIf(!gpu || (backendInfo().memory ?? 0) < 32 * 2 ** 30)(
    'B*N*N past 2^31 (B = 33, N = 8192, D = 1): every row against the closed form',
    () => {
      // with D = 1, xn_i = sign(x_i), so P_ij = 1 / Z_i for j of the same sign as i and
      // exp(-2 / tau) / Z_i for the others: xneg_i needs only the sums of each sign
      const B = 33;
      const N = 8192;
      const tau = 0.7;
      const s = 0.3;
      const x = randomArray(B * N, 22);
      const o: ContraNormOptions = { temperature: tau, scale: s, layerNorm: false };
      const { y } = contraNorm(x, [B, N, 1], cuda({ ...o, saveForBackward: false }));
      const far = Math.exp(-2 / tau);
      const want = new Float64Array(B * N);
      for (let b = 0; b < B; b++) {
        let sumPos = 0,
          sumNeg = 0,
          nPos = 0,
          nNeg = 0;
        for (let i = 0; i < N; i++) {
          const v = x[b * N + i];
          if (v > 0) ((sumPos += v), nPos++);
          else ((sumNeg += v), nNeg++);
        }
        for (let i = 0; i < N; i++) {
          const v = x[b * N + i];
          const pos = v > 0;
          const z = (pos ? nPos : nNeg) + far * (pos ? nNeg : nPos);
          const xneg = ((pos ? sumPos : sumNeg) + far * (pos ? sumNeg : sumPos)) / z;
          want[b * N + i] = v - s * xneg;
        }
      }
      expectClose(y, want, { abs: 1e-5, rel: 1e-4 }, 'y');
    },
  );
});
