/**
 * The native module on any machine: it is built where nvcc is present, it loads without a GPU and
 * says what is missing, the binding checks its own arguments (it can be loaded on its own), it
 * loads in worker threads and the main thread at once, and backend choice names the reason. Cases
 * that need the module, or need CUDA to be missing, skip with the reason in their name.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Worker } from 'node:worker_threads';

import { describe, expect, test } from 'vitest';

import {
  backendInfo,
  ContraNormError,
  contraNorm,
  contraNormAsync,
  DeviceTensor,
} from '../lib/index.ts';
import { loadNative, packageRoot } from '../lib/native.ts';
import type { NativeAddon, NativeProbe } from '../lib/native.ts';
import { planForward } from '../lib/validate.ts';
import type { Plan } from '../lib/plan.ts';

const require = createRequire(import.meta.url);
const load = loadNative();
const addon = load.addon;
const probe: NativeProbe | null = addon?.probe() ?? null;
const cudaRuns = probe?.ok === true;

/** The nvcc the native build would use, or null. */
function findNvcc(): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  const candidates = [process.env.CUDACXX, ...dirs.map((d) => join(d, 'nvcc'))];
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) {
    if (home) candidates.push(join(home, 'bin', 'nvcc'));
  }
  return candidates.find((f) => f !== undefined && existsSync(f)) ?? null;
}

const nvcc = findNvcc();
const skipped = process.env.CONTRANORM_SKIP_NATIVE !== undefined;
if (addon === null) console.log(`native module not loaded: ${load.error}`);
else if (!cudaRuns) console.log(`native module loaded; CUDA cannot run: ${probe!.reason}`);

describe('building', () => {
  test.skipIf(nvcc === null || skipped)(
    `the module is built and loads where nvcc is present (${nvcc === null ? 'skipped: no nvcc' : 'nvcc found'})`,
    () => {
      expect(load.error).toBeNull();
      const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8'));
      expect(addon!.version).toBe(pkg.version);
    },
  );
});

describe.skipIf(addon === null)(`the loaded module (${load.error ?? 'loaded'})`, () => {
  const a = addon as NativeAddon;
  const p = probe as NativeProbe;

  test('probe() names the device found, or what is missing', () => {
    if (p.ok) {
      expect(p.reason).toBeNull();
      expect(p.missing).toBeNull();
      expect(p.device).toEqual(expect.any(String));
      expect(p.computeCapability).toMatch(/^\d+\.\d+$/);
      expect(p.memory).toBeGreaterThan(0);
      expect(p.cublas).toMatch(/libcublas\.so/);
      return;
    }
    expect(p.reason).toEqual(expect.any(String));
    const named = { driver: /driver/, device: /device/, cublas: /cuBLAS/, runtime: /CUDA/ };
    expect(Object.keys(named)).toContain(p.missing);
    expect(p.reason).toMatch(named[p.missing!]);
    expect(p.runtimeVersion).toBeGreaterThanOrEqual(12000);
  });

  test('backendInfo() agrees with the probe', () => {
    const info = backendInfo();
    if (p.ok) {
      expect(info).toEqual({
        backend: 'cuda',
        device: p.device,
        computeCapability: p.computeCapability,
        memory: p.memory,
        cublas: p.cublas,
      });
    } else {
      expect(info).toEqual({ backend: 'cpu', reason: p.reason });
    }
  });

  test.skipIf(p.missing !== 'driver')(
    `without a driver, backendInfo() names the missing driver (here: ${p.missing ?? 'CUDA runs'})`,
    () => {
      expect(backendInfo().reason).toMatch(/no CUDA driver|CUDA driver/);
    },
  );

  describe.skipIf(p.ok)(`where CUDA cannot run (${p.reason ?? 'it runs here'})`, () => {
    test("backend 'cuda' throws an error naming what is missing, sync and async", async () => {
      const x = new Float32Array(12).fill(1);
      const check = (err: unknown) => {
        expect(err).toBeInstanceOf(ContraNormError);
        expect((err as ContraNormError).code).toBe('ERR_CONTRANORM_BACKEND_UNAVAILABLE');
        expect((err as Error).message).toContain(p.reason!);
      };
      let caught: unknown;
      try {
        contraNorm(x, [1, 3, 4], { backend: 'cuda' });
      } catch (err) {
        caught = err;
      }
      check(caught);
      await contraNormAsync(x, [1, 3, 4], { backend: 'cuda' }).then(
        () => expect.fail('resolved'),
        check,
      );
    });

    test('DeviceTensor.upload throws the same reason', () => {
      expect(() => DeviceTensor.upload(new Float32Array(4))).toThrow(p.reason!);
      try {
        DeviceTensor.upload(new Float32Array(4));
      } catch (err) {
        expect((err as ContraNormError).code).toBe('ERR_CONTRANORM_BACKEND_UNAVAILABLE');
      }
    });

    test('the binding refuses to run, with the reason and a code, sync and async', async () => {
      const { plan } = planForward(new Float32Array(12), [1, 3, 4], {});
      const call = () => a.forward(new Float32Array(12), plan, new Float32Array(12));
      expect(call).toThrow(p.reason!);
      expect(call).toThrow(expect.objectContaining({ code: 'ERR_CONTRANORM_BACKEND_UNAVAILABLE' }));
      await expect(
        a.forwardAsync(new Float32Array(12), plan, new Float32Array(12)),
      ).rejects.toMatchObject({ code: 'ERR_CONTRANORM_BACKEND_UNAVAILABLE' });
      expect(() => new a.DeviceBuffer(4)).toThrow(p.reason!);
    });
  });

  describe('argument checks of the binding', () => {
    const SHAPE = [2, 3, 4] as const;
    const n = 24;
    const base = (): Plan => planForward(new Float32Array(n), [...SHAPE], {}).plan;
    const withPlan = (change: Record<string, unknown>) => ({ ...base(), ...change }) as Plan;
    const f32 = () => new Float32Array(n);

    type Case = [
      label: string,
      run: () => unknown,
      kind: ErrorConstructor,
      code: string,
      msg: RegExp,
    ];
    const cases: Case[] = [
      [
        'x of the wrong type',
        () => a.forward(new Float64Array(n) as never, base(), f32()),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^x: expected a Float32Array or DeviceBuffer of length 24, received Float64Array of length 24$/,
      ],
      [
        'x of the wrong length',
        () => a.forward(new Float32Array(5), base(), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^x: expected .* of length 24, received Float32Array of length 5$/,
      ],
      [
        'y missing',
        () => a.forward(f32(), base(), undefined as never),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^y: expected .*received undefined$/,
      ],
      [
        'no plan',
        () => a.forward(f32(), null as never, f32()),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^plan: expected an object, received null$/,
      ],
      [
        'a fractional B',
        () => a.forward(f32(), withPlan({ B: 1.5 }), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^plan\.B: expected a non-negative integer, received number 1\.5$/,
      ],
      [
        'a string N',
        () => a.forward(f32(), withPlan({ N: '3' }), f32()),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^plan\.N: /,
      ],
      [
        'M not matching the mode',
        () => a.forward(f32(), withPlan({ M: 4 }), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^plan\.M: expected 3 /,
      ],
      [
        'an unknown mode',
        () => a.forward(f32(), withPlan({ mode: 'rows' }), f32()),
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^plan\.mode: expected 'tokens' or 'features', received a string$/,
      ],
      [
        'scale of the wrong type',
        () => a.forward(f32(), withPlan({ scale: new Float64Array(1) }), f32()),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^plan\.scale: /,
      ],
      [
        'scale of the wrong length',
        () => a.forward(f32(), withPlan({ scale: new Float32Array(3) }), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^plan\.scale: expected a Float32Array of length 1 or D = 4/,
      ],
      [
        'a zero temperature',
        () => a.forward(f32(), withPlan({ temperature: 0 }), f32()),
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^plan\.temperature: expected a finite positive number, received number 0$/,
      ],
      [
        'a NaN eps',
        () => a.forward(f32(), withPlan({ eps: NaN }), f32()),
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^plan\.eps: /,
      ],
      [
        'a non-boolean flag',
        () => a.forward(f32(), withPlan({ dualNorm: 1 }), f32()),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^plan\.dualNorm: expected a boolean, received number 1$/,
      ],
      [
        'lengths past N',
        () => a.forward(f32(), withPlan({ lengths: Int32Array.of(3, 4) }), f32()),
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^plan\.lengths\[1\]: expected an integer in \[0, N\]/,
      ],
      [
        'lengths of the wrong length',
        () => a.forward(f32(), withPlan({ lengths: Int32Array.of(3) }), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^plan\.lengths: /,
      ],
      [
        'a mask of the wrong size',
        () => a.forward(f32(), withPlan({ mask: new Uint8Array(10) }), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^plan\.mask: expected a Uint8Array of length 9, received Uint8Array of length 10$/,
      ],
      [
        'a weight of the wrong length',
        () => a.forward(f32(), withPlan({ weight: new Float32Array(3) }), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /weight/,
      ],
      [
        'an unknown precision',
        () => a.forward(f32(), withPlan({ precision: 'fp16' }), f32()),
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^plan\.precision: /,
      ],
      [
        'y overlapping x',
        () => {
          const buf = new Float32Array(n + 4);
          a.forward(buf.subarray(0, n), base(), buf.subarray(4));
        },
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^y: expected memory apart from x/,
      ],
      [
        'backward without a context',
        () => a.backward(f32(), {} as never, f32()),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^saved: expected the saved context of a forward call, received an object$/,
      ],
      [
        'a Saved made from JavaScript',
        () => new (a as unknown as { Saved: new () => unknown }).Saved(),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /made by forward calls only/,
      ],
      [
        'a DeviceBuffer of negative length',
        () => new a.DeviceBuffer(-1),
        RangeError,
        'ERR_CONTRANORM_ARG_VALUE',
        /^length: expected a non-negative integer, received number -1$/,
      ],
      [
        'a DeviceBuffer of string length',
        () => new a.DeviceBuffer('4' as never),
        TypeError,
        'ERR_CONTRANORM_ARG_TYPE',
        /^length: /,
      ],
      [
        'async forward with a bad argument',
        () => a.forwardAsync(new Float32Array(5), base(), f32()),
        RangeError,
        'ERR_CONTRANORM_SHAPE',
        /^x: /,
      ],
    ];

    test.each(cases)('%s', (_label, run, kind, code, msg) => {
      let caught: unknown;
      try {
        run();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(kind);
      expect((caught as { code?: string }).code).toBe(code);
      expect((caught as Error).message).toMatch(msg);
    });

    test('memoryStats() and emptyCache() answer without a device', () => {
      const s = a.memoryStats();
      for (const key of [
        'reservedBytes',
        'allocatedBytes',
        'peakReservedBytes',
        'mallocCalls',
        'freeCalls',
      ]) {
        expect(s[key as keyof typeof s]).toEqual(expect.any(Number));
      }
      expect(() => a.emptyCache()).not.toThrow();
    });
  });

  test('loads in two worker threads and the main thread at once', async () => {
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const file = process.env.CONTRANORM_NATIVE_PATH;
      const addon = file
        ? require(require('node:path').resolve(file))
        : require(workerData.gypBuild)(workerData.root);
      parentPort.postMessage({ version: addon.version, probe: addon.probe() });
    `;
    const gypBuild = require.resolve('node-gyp-build');
    const answers = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<{ version: string; probe: NativeProbe }>((resolve, reject) => {
            const w = new Worker(code, { eval: true, workerData: { gypBuild, root: packageRoot } });
            w.once('message', (m) => {
              resolve(m);
              void w.terminate();
            });
            w.once('error', reject);
          }),
      ),
    );
    for (const answer of answers) {
      expect(answer.version).toBe(a.version);
      expect(answer.probe).toEqual(p);
    }
    expect(a.probe()).toEqual(p);
  });
});

test.skipIf(cudaRuns)(
  `auto says why it runs on the CPU path in one NODE_DEBUG=contranorm line (${cudaRuns ? 'skipped: CUDA runs' : 'CPU path here'})`,
  () => {
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', join(packageRoot, 'test', 'fixtures', 'debug-line.ts')],
      {
        env: { ...process.env, NODE_DEBUG: 'contranorm', CONTRANORM_BACKEND: '' },
        encoding: 'utf8',
      },
    );
    expect(child.status, child.stderr).toBe(0);
    const info = JSON.parse(child.stdout);
    expect(info.backend).toBe('cpu');
    const lines = child.stderr.split('\n').filter((l) => l.includes('auto backend runs'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^CONTRANORM \d+: auto backend runs on the CPU path: /);
    expect(lines[0]).toContain(info.reason);
  },
);

describe('the GPU check (bench/gpu/check.sh)', () => {
  const script = join(packageRoot, 'bench', 'gpu', 'check.sh');

  test('a dry run checks its arguments and tools, writes summary.json and prints the table', () => {
    const dir = mkdtempSync(join(tmpdir(), 'contranorm-check-'));
    const run = spawnSync('bash', [script, '--dry-run', dir], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    const table = run.stdout.slice(run.stdout.lastIndexOf('== summary'));
    for (const step of ['build', 'backend', 'tests', 'memcheck']) {
      expect(table).toMatch(new RegExp(`^${step} +\\| dry-run`, 'm'));
    }
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    expect(summary.steps.map((s: { step: string }) => s.step)).toEqual([
      'build',
      'backend',
      'tests',
      'memcheck',
      'bench',
      'torch',
    ]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('bad arguments exit 2 and name the problem', () => {
    const run = spawnSync('bash', [script, '--fast'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/unknown option --fast/);
  });
});
