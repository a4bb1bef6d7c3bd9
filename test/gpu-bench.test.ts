/**
 * The JavaScript side of the GPU benchmark (bench/gpu/bench.ts) and the GPU check that runs it
 * (bench/gpu/check.sh), where there is no GPU: the row definitions agree with torch_bench.py's,
 * the dry run checks the arguments and prints the plan, the join of our rows with PyTorch's gives
 * the ratios and the targets, and check.sh --dry-run covers both benchmarks. Where the CPU
 * emulation of the native module is built (bash native/emu/build.sh), the bench also runs on it
 * with tiny shapes; elsewhere that case is skipped with the reason printed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, test } from 'vitest';

import { compare, tableLines, targetLines } from '../bench/gpu/join.ts';
import type { OurResult, OurRow, TorchResult } from '../bench/gpu/join.ts';
import {
  ArgError,
  ASSUMED_L2_BYTES,
  DEFAULT_SHAPES,
  joinKey,
  MAX_BUFFERS,
  parseBenchArgs,
  planRows,
  rotation,
  work,
} from '../bench/gpu/plan.ts';
import type { BenchShape } from '../bench/gpu/plan.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const script = path.join(root, 'bench/gpu/bench.ts');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'contranorm-gpu-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs bench.ts with node and tsx; the environment has no output folder unless `env` gives one. */
function bench(args: string[], env: Record<string, string> = {}) {
  const clean: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('CONTRANORM_BENCH_OUT' in env)) delete clean.CONTRANORM_BENCH_OUT;
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: clean,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('bench/gpu/plan.ts', () => {
  test('FLOPs and bytes follow the definitions of torch_bench.py', () => {
    const t: BenchShape = { mode: 'tokens', B: 32, N: 512, D: 768 };
    expect(work(t, 'forward')).toEqual({
      flops: 4 * 32 * 512 ** 2 * 768,
      bytes: 4 * (2 * 32 * 512 * 768 + 2 * 32 * 512 ** 2),
    });
    expect(work(t, 'backward')).toEqual({
      flops: 6 * 32 * 512 ** 2 * 768,
      bytes: 4 * (3 * 32 * 512 * 768 + 3 * 32 * 512 ** 2),
    });
    const f: BenchShape = { mode: 'features', B: 1, N: 169343, D: 128 };
    const both = work(f, 'forward+backward');
    expect(both.flops).toBe(10 * 169343 * 128 ** 2);
    expect(both.bytes).toBe(4 * (5 * 169343 * 128 + 5 * 128 ** 2));
    expect(joinKey(t, 'tf32', 'forward+backward')).toBe('tokens/32x512x768/tf32/forward+backward');
  });

  test('inputs rotate over twice the L2 size, or flush it for tiny shapes', () => {
    // the counts torch_bench.py prints for the default shapes on a 50 MiB L2
    const counts = DEFAULT_SHAPES.map((s) => rotation(4 * s.B * s.N * s.D, ASSUMED_L2_BYTES));
    expect(counts.map((c) => c.buffers)).toEqual([9, 3, 3, 7, 2, 2]);
    expect(counts.map((c) => c.flush)).toEqual([false, false, false, false, true, false]);
    for (const [s, c] of DEFAULT_SHAPES.map((s, i) => [s, counts[i]] as const)) {
      if (!c.flush) expect(c.buffers * 4 * s.B * s.N * s.D).toBeGreaterThan(2 * ASSUMED_L2_BYTES);
    }
    expect(rotation(4096, ASSUMED_L2_BYTES).buffers).toBeLessThanOrEqual(MAX_BUFFERS);
  });

  test('arguments: defaults, subsets and the environment', () => {
    const a = parseBenchArgs(['--out', tmp], {})!;
    expect(planRows(a)).toHaveLength(72);
    expect(a.settings.overheadCalls).toBe(10_000);
    const q = parseBenchArgs(
      ['--quick', '--shapes', 'f:1x100x16,2x8x4', '--memory', 'device', '--passes', 'backward'],
      { CONTRANORM_BENCH_OUT: tmp },
    )!;
    expect(q.out).toBe(tmp);
    expect(q.shapes).toEqual([
      { mode: 'features', B: 1, N: 100, D: 16 },
      { mode: 'tokens', B: 2, N: 8, D: 4 },
    ]);
    expect(planRows(q)).toHaveLength(4);
    expect(q.settings.maxReps).toBeLessThan(a.settings.maxReps);
    expect(parseBenchArgs(['--help'], {})).toBeNull();
  });
});

// -- the join ---------------------------------------------------------------------------------

function ourRow(key: string, memory: string, ms: number, extra: Partial<OurRow> = {}): OurRow {
  const [mode, dims, precision, pass] = key.split('/');
  const [B, N, D] = dims.split('x').map(Number);
  return {
    key: `${key}/${memory}`,
    join_key: key,
    mode,
    B,
    N,
    D,
    precision,
    pass,
    memory,
    median_ms: ms,
    p10_ms: ms,
    p90_ms: ms,
    min_ms: ms,
    wall_median_ms: ms * 1.01,
    reps: 20,
    warmup: 6,
    buffers: 3,
    flush: false,
    flops: 1e9,
    bytes: 1e8,
    gflops: 1e9 / (ms * 1e6),
    gbps: 1e8 / (ms * 1e6),
    gemm_fraction: 0.5,
    copy_fraction: 0.1,
    profiled_ms: ms,
    gemm_ms: ms * 0.8,
    products: 7,
    non_gemm_share: 0.2,
    peak_mem_bytes: 2 ** 30,
    finite: true,
    error: null,
    ...extra,
  };
}

function ourResult(rows: OurRow[], overheadUs: number | null): OurResult {
  return {
    created: '2026-01-01T00:00:00.000Z',
    commit: 'abc1234',
    device: { name: 'Test GPU', driver: '580.00', cuda_runtime: '13.0', cublas: 'libcublas' },
    ceilings: {
      gemm: { fp32: { n: 8192, tflops: 50 }, tf32: { n: 8192, tflops: 300 } },
      copy: { gbps: 4000 },
    },
    overhead:
      overheadUs === null
        ? null
        : {
            shape: 'tokens/1x16x64',
            calls: 10000,
            median_us: overheadUs,
            p10_us: overheadUs,
            p90_us: overheadUs,
            mean_us: overheadUs,
            saving_median_us: overheadUs,
            device_median_us: overheadUs / 2,
            target_us: 20,
          },
    rows,
  };
}

const TARGET = 'tokens/32x512x768';

function torchResult(ms: Record<string, number | string>): TorchResult {
  return {
    created: '2026-01-01T00:00:00+00:00',
    device: { torch: '2.11.0', cuda_runtime: '13.0' },
    ceilings: {},
    rows: Object.entries(ms).map(([key, v]) => ({
      key,
      median_ms: typeof v === 'number' ? v : null,
      peak_mem_bytes: typeof v === 'number' ? 2 ** 31 : null,
      error: typeof v === 'string' ? v : null,
    })),
  };
}

describe('bench/gpu/join.ts', () => {
  const fp32 = `${TARGET}/fp32/forward+backward`;
  const tf32 = `${TARGET}/tf32/forward+backward`;
  const ours = ourResult(
    [
      ourRow(fp32, 'device', 2),
      ourRow(fp32, 'host', 9),
      ourRow(tf32, 'device', 1, { non_gemm_share: 0.4 }),
      ourRow('tokens/1x16x64/fp32/forward', 'device', 0.05, { error: 'a failure' }),
    ],
    12.5,
  );
  const torch = torchResult({
    [`${fp32}/eager`]: 4,
    [`${fp32}/compile`]: 2.5,
    [`${tf32}/eager`]: 1.2,
    [`${tf32}/compile`]: 'skipped: --budget-s 10 reached',
  });

  test('ratios per row, our failures and theirs as notes', () => {
    const c = compare(ours, torch);
    expect(c.rows.map((r) => r.key)).toEqual([fp32, tf32, 'tokens/1x16x64/fp32/forward']);
    const [a, b, d] = c.rows;
    expect(a).toMatchObject({ ours_ms: 2, host_ms: 9, eager_ms: 4, compile_ms: 2.5 });
    expect(a.ours_over_eager).toBeCloseTo(0.5);
    expect(a.ours_over_compile).toBeCloseTo(0.8);
    expect(a.note).toBeNull();
    expect(b.compile_ms).toBeNull();
    expect(b.ours_over_compile).toBeNull();
    expect(b.note).toContain('compile: skipped');
    expect(d.ours_ms).toBeNull();
    expect(d.note).toContain('ours: a failure');
  });

  test('targets: met, not met, and not measured', () => {
    const t = compare(ours, torch).targets;
    const verdict = (what: string) => t.find((x) => x.what.includes(what))!.met;
    expect(verdict('fp32/forward+backward: ours/eager')).toBe(true); // 0.5 <= 0.667
    expect(verdict('fp32/forward+backward: ours/compile')).toBe(true); // 0.8 <= 1
    expect(verdict('fp32/forward+backward: non-GEMM')).toBe(true); // 0.2 < 0.25
    expect(verdict('tf32/forward+backward: ours/eager')).toBe(false); // 0.83 > 0.667
    expect(verdict('tf32/forward+backward: ours/compile')).toBeNull();
    expect(verdict('tf32/forward+backward: non-GEMM')).toBe(false);
    expect(verdict('call overhead')).toBe(true);
    const lines = targetLines(compare(ours, torch));
    expect(lines.filter((l) => l.endsWith(': met'))).toHaveLength(4);
    expect(lines.filter((l) => l.endsWith('NOT met'))).toHaveLength(2);
    expect(lines.filter((l) => l.endsWith('not measured'))).toHaveLength(1);
  });

  test('without torch.json the PyTorch columns stay empty', () => {
    const c = compare(ours, null);
    expect(c.rows[0].eager_ms).toBeNull();
    expect(c.targets.filter((t) => t.met === null).length).toBeGreaterThanOrEqual(4);
    const lines = tableLines(c);
    expect(lines[0]).toMatch(/ours ms .* eager ms .* comp ms .* \/eager .* \/comp/);
    expect(lines[2]).toMatch(/^tokens\/32x512x768 +fp32 fwd\+bwd +2\.0000 +9\.000 +- +- +- +-/);
  });

  test('--join reads both files, writes comparison.json and prints the table', () => {
    const dir = path.join(tmp, 'join');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'bench.json'), JSON.stringify(ours));
    writeFileSync(path.join(dir, 'torch.json'), JSON.stringify(torch));
    const r = bench(['--join', '--out', dir]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('contranorm on Test GPU (driver 580.00');
    expect(r.stdout).toMatch(
      /tokens\/32x512x768 +fp32 fwd\+bwd +2\.0000 +9\.000 +4\.0000 +2\.5000 +0\.50 +0\.80/,
    );
    expect(r.stdout).toContain('call overhead: tokens/1x16x64 forward, DeviceTensors, 10000 calls');
    const written = JSON.parse(readFileSync(path.join(dir, 'comparison.json'), 'utf8'));
    expect(written.rows).toHaveLength(3);
    expect(written.sources).toEqual({ ours: 'bench.json', torch: 'torch.json' });
    expect(bench(['--join', '--out', path.join(tmp, 'empty')]).status).toBe(1);
  });
});

// -- the command ------------------------------------------------------------------------------

const PROBE = `import('./lib/index.ts').then((m) => console.log(m.backendInfo().backend))`;

describe('bench/gpu/bench.ts without a GPU', () => {
  test('--dry-run prints the full plan and exits 0', () => {
    const out = path.join(tmp, 'plan');
    const r = bench(['--dry-run', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('(dry run: no GPU work)');
    expect(r.stdout).toContain(path.join(out, 'bench.json'));
    expect(r.stdout).toContain(
      'rows: 72 = 6 shapes x 2 precisions (fp32,tf32) x 2 memory (device,host) x 3 passes',
    );
    for (const shape of ['32x128x768', '32x512x768', '8x2048x768', '4x4096x256', '1x16x64']) {
      expect(r.stdout).toContain(`tokens/${shape}`);
    }
    expect(r.stdout).toContain('features/1x169343x128');
    expect(r.stdout).toMatch(/tokens\/1x16x64 .* 2 buffers \+ L2 flush/);
    expect(r.stdout).toContain('GEMM 8192^3 through cuBLAS');
    expect(r.stdout).toContain('median of 10000 calls');
    expect(r.stdout).toContain('key of a row: tokens/32x128x768/fp32/forward/device');
    expect(r.stdout).toMatch(/native module/);
    expect(r.stdout).toContain('nothing timed');
    expect(existsSync(out)).toBe(false);
  });

  test('the output folder may come from CONTRANORM_BENCH_OUT; --help prints the usage', () => {
    const out = path.join(tmp, 'from-env');
    const r = bench(['--dry-run', '--quick'], { CONTRANORM_BENCH_OUT: out });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(path.join(out, 'bench.json'));
    expect(r.stdout).toContain('median of 5..40 timed calls');
    const h = bench(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--overhead-calls N');
  });

  test('bad arguments exit 2 and name the problem', () => {
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, '');
    const cases: [string[], string][] = [
      [[], 'expected an output folder'],
      [['--out', file], 'exists and is not a folder'],
      [['--out', tmp, '--shapes', '32x512'], "shape '32x512'"],
      [['--out', tmp, '--shapes', 'rows:1x2x3'], "received 'rows'"],
      [['--out', tmp, '--precisions', 'fp16'], '--precisions'],
      [['--out', tmp, '--memory', 'disk'], '--memory'],
      [['--out', tmp, '--budget-s', '0'], '--budget-s'],
      [['--out', tmp, '--reps', 'many'], '--reps'],
      [['--out', tmp, '--frobnicate'], "unknown option '--frobnicate'"],
      [['--out', tmp, 'extra'], "unexpected argument 'extra'"],
    ];
    for (const [args, text] of cases) {
      expect(() => parseBenchArgs(args, {}), args.join(' ')).toThrow(ArgError);
      expect(() => parseBenchArgs(args, {}), args.join(' ')).toThrow(text);
    }
    // and through the command: exit 2, the message on stderr
    for (const [args, text] of cases.slice(0, 3)) {
      const r = bench(['--dry-run', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(text);
    }
  });

  // where CUDA runs, the real run belongs to the GPU check
  const cudaHere =
    spawnSync(process.execPath, ['--import', 'tsx', '-e', PROBE], {
      cwd: root,
      encoding: 'utf8',
    }).stdout.trim() === 'cuda';
  test.skipIf(cudaHere)('a real run where CUDA cannot run exits 3 and says why', () => {
    const r = bench(['--out', path.join(tmp, 'real'), '--shapes', '1x16x64']);
    expect(r.status).toBe(3);
    expect(r.stdout).toMatch(/CUDA cannot run|native module not loaded|lacks the benchmark hooks/);
  });
});

describe('bench/gpu/check.sh --dry-run', () => {
  test('checks the tools and both benchmarks, and exits 0', () => {
    const out = path.join(tmp, 'check');
    const r = spawnSync('bash', ['bench/gpu/check.sh', '--dry-run', '--quick', out], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/bench +\| dry-run +\| +\d+ \| arguments and plan checked: rows: 72/);
    expect(r.stdout).toMatch(/torch +\| (dry-run|skipped) +\|/);
    expect(r.stdout).toContain('plan of bench/gpu/bench.ts (dry run: no GPU work)');
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8'));
    expect(summary.steps.map((s: { step: string }) => s.step)).toEqual([
      'build',
      'backend',
      'tests',
      'memcheck',
      'bench',
      'torch',
    ]);
    expect(existsSync(path.join(out, 'logs.tar.gz'))).toBe(true);
  });

  test('bad arguments exit 2', () => {
    for (const args of [['--budget-s', '10'], ['--skip', 'lunch'], ['--frobnicate']]) {
      const r = spawnSync('bash', ['bench/gpu/check.sh', '--dry-run', ...args, tmp], {
        cwd: root,
        encoding: 'utf8',
      });
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/check: /);
    }
  });
});

// -- on the CPU emulation of the module, where it is built -------------------------------------

const emu = path.join(root, 'build/emu/contranorm.node');
const emuLib = path.join(root, 'build/emu/lib');
function emuState(): string | null {
  if (!existsSync(emu)) return 'build/emu/contranorm.node is not built (bash native/emu/build.sh)';
  const r = spawnSync(
    process.execPath,
    ['-e', `console.log(typeof require(${JSON.stringify(emu)})._benchTiming)`],
    { encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: emuLib } },
  );
  if (r.stdout.trim() !== 'function') {
    return 'build/emu/contranorm.node lacks the benchmark hooks (bash native/emu/build.sh)';
  }
  return null;
}
const emuMissing = emuState();
if (emuMissing !== null) console.log(`bench on the emulated module skipped: ${emuMissing}`);

describe.skipIf(emuMissing !== null)('bench/gpu/bench.ts on the CPU emulation', () => {
  test('tiny shapes: every row, the ceilings, the checks and the call overhead', () => {
    const out = path.join(tmp, 'emu');
    const r = bench(
      [
        '--out',
        out,
        '--shapes',
        '1x16x64,1x2x32,f:1x40x8',
        '--reps',
        '2',
        '--warmup',
        '0',
        '--overhead-calls',
        '5',
        '--gemm-n',
        '32',
        '--copy-mib',
        '1',
        '--precisions',
        'fp32',
      ],
      { LD_LIBRARY_PATH: emuLib, CONTRANORM_NATIVE_PATH: emu },
    );
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const result = JSON.parse(readFileSync(path.join(out, 'bench.json'), 'utf8'));
    expect(result.complete).toBe(true);
    expect(result.device.l2_bytes).toBeGreaterThan(0);
    expect(result.ceilings.gemm.fp32.tflops).toBeGreaterThan(0);
    expect(result.ceilings.copy.gbps).toBeGreaterThan(0);
    expect(Object.values(result.checks).every((c) => (c as { ok: boolean }).ok)).toBe(true);
    expect(result.overhead.calls).toBe(5);
    expect(result.overhead.device_median_us).toBeGreaterThan(0);
    const rows = result.rows as OurRow[];
    expect(rows).toHaveLength(18);
    for (const row of rows) {
      expect(row.error, row.key).toBeNull();
      expect(row.median_ms, row.key).toBeGreaterThan(0);
      expect(row.wall_median_ms, row.key).toBeGreaterThan(0);
      expect(row.reps).toBe(2);
      expect(row.finite).toBe(true);
      expect(row.products, row.key).toBe(
        { forward: 2, backward: 4, 'forward+backward': 6 }[row.pass],
      );
      expect(row.non_gemm_share!).toBeGreaterThan(0);
      expect(row.non_gemm_share!).toBeLessThan(1);
      expect(row.peak_mem_bytes!).toBeGreaterThan(0);
    }
    // 1x2x32 is small enough on the emulated L2 to take the flush
    expect(rows.filter((x) => x.flush).map((x) => x.N)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(r.stdout).toMatch(/tokens\/1x16x64 +fp32 fwd\+bwd/);
  });
});
