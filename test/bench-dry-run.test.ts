/**
 * The PyTorch half of the GPU benchmark (bench/gpu/torch_bench.py), checked where there is no
 * GPU and no torch: the script compiles, its dry run prints the plan and exits 0 without
 * importing torch, the output folder comes from --out or CONTRANORM_BENCH_OUT, and bad
 * arguments exit 2 with a message naming them. Skipped, with the reason printed, only where
 * python3 itself is absent.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, test } from 'vitest';

const script = fileURLToPath(new URL('../bench/gpu/torch_bench.py', import.meta.url));
const probe = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const python = probe.error === undefined && probe.status === 0;
if (!python) console.log(`torch_bench dry-run tests skipped: python3 not found (${probe.error})`);

const tmp = mkdtempSync(path.join(os.tmpdir(), 'contranorm-bench-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs the script with python3; the environment has no output folder unless `env` gives one. */
function run(args: string[], env: Record<string, string> = {}) {
  const clean: NodeJS.ProcessEnv = { ...process.env, ...env, PYTHONDONTWRITEBYTECODE: '1' };
  if (!('CONTRANORM_BENCH_OUT' in env)) delete clean.CONTRANORM_BENCH_OUT;
  const r = spawnSync('python3', [script, ...args], { encoding: 'utf8', env: clean });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!python)('bench/gpu/torch_bench.py without a GPU', () => {
  test('compiles, PyTorch half included', () => {
    const code = 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")';
    const r = spawnSync('python3', ['-c', code, script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('--dry-run prints the full plan and exits 0', () => {
    const out = path.join(tmp, 'plan');
    const r = run(['--dry-run', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('dry run: torch not imported');
    expect(r.stdout).toContain(path.join(out, 'torch.json'));
    expect(r.stdout).toContain('rows: 72 = 6 shapes x 2 precisions (fp32,tf32) x 3 passes');
    for (const shape of ['32x128x768', '32x512x768', '8x2048x768', '4x4096x256', '1x16x64']) {
      expect(r.stdout).toContain(`tokens/${shape}`);
    }
    expect(r.stdout).toContain('features/1x169343x128');
    expect(r.stdout).toContain('GEMM 8192^3');
    expect(r.stdout).toContain('12 compilations');
    expect(r.stdout).toMatch(/expected: about [\d.]+ min/);
    expect(r.stdout).toContain('join key of a row: tokens/32x128x768/fp32/forward/eager');
    expect(r.stdout).toContain('nothing timed');
  });

  test('--quick and a subset of shapes, precisions and impls', () => {
    const r = run([
      '--dry-run',
      '--quick',
      '--out',
      tmp,
      '--shapes',
      '2x8x4,features:1x100x16',
      '--precisions',
      'tf32',
      '--impls',
      'eager',
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('rows: 6 = 2 shapes x 1 precisions (tf32) x 3 passes x 1 impls');
    expect(r.stdout).toContain('tokens/2x8x4');
    expect(r.stdout).toContain('features/1x100x16');
    expect(r.stdout).toContain('median of 5..40 timed calls');
    expect(r.stdout).toContain('0 compilations');
  });

  test('the output folder may come from CONTRANORM_BENCH_OUT', () => {
    const out = path.join(tmp, 'from-env');
    const r = run(['--dry-run'], { CONTRANORM_BENCH_OUT: out });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(path.join(out, 'torch.json'));
  });

  test('bad arguments exit 2 and name the problem', () => {
    const file = path.join(tmp, 'a-file');
    writeFileSync(file, '');
    const cases: [string[], string][] = [
      [['--dry-run'], 'expected an output folder'],
      [['--dry-run', '--out', file], 'exists and is not a folder'],
      [['--dry-run', '--out', tmp, '--shapes', '32x512'], "shape '32x512'"],
      [['--dry-run', '--out', tmp, '--shapes', 'rows:1x2x3'], "received 'rows'"],
      [['--dry-run', '--out', tmp, '--precisions', 'fp16'], '--precisions'],
      [['--dry-run', '--out', tmp, '--budget-s', '0'], '--budget-s'],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });

  // on a machine where torch sees a GPU the real run belongs to the GPU check, not here
  const torchCuda =
    python &&
    spawnSync('python3', ['-c', 'import torch; assert torch.cuda.is_available()']).status === 0;
  const because = torchCuda ? ' (skipped: torch sees a GPU)' : '';
  test.skipIf(torchCuda)(
    `a real run where torch or CUDA is missing exits 3 and says so${because}`,
    () => {
      const r = run(['--out', path.join(tmp, 'real')]);
      expect(r.status).toBe(3);
      expect(r.stdout).toMatch(/cannot import torch|no CUDA device/);
    },
  );
});
