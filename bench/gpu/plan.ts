/**
 * What the JavaScript side of the GPU benchmark (bench.ts) runs, decided from its arguments alone:
 * the shapes, precisions, passes and memory kinds, the FLOP and byte counts of a row (the same
 * definitions as bench/gpu/torch_bench.py), how many rotating inputs each shape takes, and how much
 * work each row gets. Nothing here loads the native module, so the dry run and the tests use it on
 * any machine.
 */
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Where the results go when --out is not given, as for torch_bench.py. */
export const OUT_ENV = 'CONTRANORM_BENCH_OUT';
export const JSON_NAME = 'bench.json';
export const TORCH_JSON_NAME = 'torch.json';
export const COMPARISON_JSON_NAME = 'comparison.json';
/** The H200's L2, used by the dry run and where the device cannot tell. */
export const ASSUMED_L2_BYTES = 50 * 2 ** 20;
/**
 * More rotating buffers than this would make allocation and upload the bulk of a row; such a
 * shape (x far smaller than L2) uses two buffers and an L2 flush before each timed call instead.
 */
export const MAX_BUFFERS = 1024;

export const PRECISIONS = ['fp32', 'tf32'] as const;
export const PASSES = ['forward', 'backward', 'forward+backward'] as const;
export const MEMORIES = ['device', 'host'] as const;
export type Precision = (typeof PRECISIONS)[number];
export type Pass = (typeof PASSES)[number];
export type Memory = (typeof MEMORIES)[number];
export type Mode = 'tokens' | 'features';

/** The layer as both sides of the benchmark configure it (torch_bench.py: SCALE, ...). */
export const LAYER = { scale: 0.1, temperature: 1, lnEps: 1e-6, eps: 1e-12 } as const;

/** One benchmark shape: B items of N rows (tokens or nodes) of D channels. */
export interface BenchShape {
  mode: Mode;
  B: number;
  N: number;
  D: number;
}

export const DEFAULT_SHAPES: readonly BenchShape[] = [
  { mode: 'tokens', B: 32, N: 128, D: 768 },
  { mode: 'tokens', B: 32, N: 512, D: 768 },
  { mode: 'tokens', B: 8, N: 2048, D: 768 },
  { mode: 'tokens', B: 4, N: 4096, D: 256 },
  { mode: 'tokens', B: 1, N: 16, D: 64 },
  { mode: 'features', B: 1, N: 169343, D: 128 }, // ogbn-arxiv: 169,343 nodes of 128 features
];

/** `tokens/32x512x768`: the shape part of a row key, as torch_bench.py writes it. */
export function shapeLabel(s: BenchShape): string {
  return `${s.mode}/${s.B}x${s.N}x${s.D}`;
}

/** The key torch_bench.py gives the same row without its impl: `tokens/32x512x768/fp32/forward`. */
export function joinKey(s: BenchShape, precision: Precision, pass: Pass): string {
  return `${shapeLabel(s)}/${precision}/${pass}`;
}

/** The key of one of our rows: the join key and the memory kind, `.../forward/device`. */
export function rowKey(s: BenchShape, precision: Precision, pass: Pass, memory: Memory): string {
  return `${joinKey(s, precision, pass)}/${memory}`;
}

/**
 * FLOPs and bytes of one call of a pass: the definitions of torch_bench.py's `work()`, which
 * both sides use. FLOPs count the matrix products only (two per multiply-add): tokens forward
 * 4*B*N^2*D, backward 6*B*N^2*D; features forward 4*B*N*D^2, backward 6*B*N*D^2. Bytes are the
 * least fp32 traffic, with M = N (tokens) or D (features): forward 4*(2*B*N*D + 2*B*M^2),
 * backward 4*(3*B*N*D + 3*B*M^2); forward+backward is the sum.
 */
export function work(s: BenchShape, pass: Pass): { flops: number; bytes: number } {
  const { B, N, D } = s;
  const M = s.mode === 'tokens' ? N : D;
  const product = s.mode === 'tokens' ? B * N * N * D : B * N * D * D;
  const fwd = { flops: 4 * product, bytes: 4 * (2 * B * N * D + 2 * B * M * M) };
  const bwd = { flops: 6 * product, bytes: 4 * (3 * B * N * D + 3 * B * M * M) };
  if (pass === 'forward') return fwd;
  if (pass === 'backward') return bwd;
  return { flops: fwd.flops + bwd.flops, bytes: fwd.bytes + bwd.bytes };
}

/**
 * How the inputs of a shape rotate: `buffers` copies of x (and of dy) used in turn, together more
 * than twice the L2 size (torch_bench.py's `buffer_count`), so that no timed call finds its input
 * in L2 because an earlier call left it there; past MAX_BUFFERS, two copies and a flush of L2
 * before each timed call instead.
 */
export function rotation(xBytes: number, l2Bytes: number): { buffers: number; flush: boolean } {
  const k = Math.max(2, Math.floor((2 * l2Bytes) / Math.max(1, xBytes)) + 1);
  return k > MAX_BUFFERS ? { buffers: 2, flush: true } : { buffers: k, flush: false };
}

/** How much work each row gets; --quick cuts it about five times. */
export interface Settings {
  /** Timed work per row: reps = rowTargetS / (time of one call), within [minReps, maxReps]. */
  rowTargetS: number;
  minReps: number;
  maxReps: number;
  /** Calls after the first and before the timed ones. */
  warmup: number;
  gemmN: number;
  gemmReps: number;
  copyBytes: number;
  copyReps: number;
  /** Calls of the call-overhead measurement, after as many warm-up calls (at most 1000). */
  overheadCalls: number;
  /** No new group of rows (a shape in one precision) starts after this many seconds. */
  budgetS: number;
}

export const FULL: Settings = {
  rowTargetS: 0.25,
  minReps: 20,
  maxReps: 200,
  warmup: 5,
  gemmN: 8192,
  gemmReps: 20,
  copyBytes: 2 * 2 ** 30,
  copyReps: 30,
  overheadCalls: 10_000,
  budgetS: 150,
};

export const QUICK: Settings = {
  rowTargetS: 0.05,
  minReps: 5,
  maxReps: 40,
  warmup: 2,
  gemmN: 8192,
  gemmReps: 5,
  copyBytes: 2 * 2 ** 30,
  copyReps: 8,
  overheadCalls: 10_000,
  budgetS: 90,
};

/** The run's options, from the command line and the environment. */
export interface BenchArgs {
  out: string;
  quick: boolean;
  dryRun: boolean;
  /** Print the table of bench.json joined with torch.json (both in `out`) and stop. */
  join: boolean;
  shapes: BenchShape[];
  precisions: Precision[];
  passes: Pass[];
  memories: Memory[];
  /** A fixed number of timed calls per row, instead of the time-based choice. */
  reps: number | null;
  settings: Settings;
  seed: number;
  argv: string[];
}

/** A bad argument: the message names it; the command exits 2. */
export class ArgError extends Error {}

export const USAGE = `usage: node --import tsx bench/gpu/bench.ts [--out DIR] [options]

The JavaScript side of the GPU benchmark: writes DIR/${JSON_NAME}. DIR is --out, else $${OUT_ENV}.

  --quick               about 5x fewer calls: a smoke run
  --dry-run             check the arguments and print the plan; runs nothing on a GPU
  --join                print DIR/${JSON_NAME} joined with DIR/${TORCH_JSON_NAME}, write DIR/${COMPARISON_JSON_NAME}
  --shapes LIST         BxNxD (tokens) or features:BxNxD, comma-separated (default: the six)
  --precisions LIST     a subset of fp32,tf32
  --passes LIST         a subset of forward,backward,forward+backward
  --memory LIST         a subset of device,host (DeviceTensors; Float32Arrays, copies included)
  --budget-s S          start no new group of rows after S seconds (default 150, quick 90)
  --reps N              exactly N timed calls per row
  --warmup N            warm-up calls per row after the first (default 5, quick 2)
  --overhead-calls N    calls of the call-overhead measurement (default 10000; 0 skips it)
  --gemm-n N            side of the GEMM ceiling (default 8192)
  --copy-mib N          size of the copy ceiling in MiB (default 2048)
  --seed N              seed of the inputs (default 1234)
`;

/** 'BxNxD' (tokens) or 'features:BxNxD' / 'tokens:BxNxD' (also 'f:' and 't:'). */
export function parseShape(text: string): BenchShape {
  const colon = text.lastIndexOf(':');
  const prefix = colon < 0 ? '' : text.slice(0, colon);
  const mode = ({ '': 'tokens', t: 'tokens', f: 'features' } as Record<string, string>)[prefix];
  const resolved = mode ?? prefix;
  if (resolved !== 'tokens' && resolved !== 'features') {
    throw new ArgError(
      `--shapes: shape '${text}': expected mode 'tokens' or 'features', received '${prefix}'`,
    );
  }
  const parts = text
    .slice(colon + 1)
    .toLowerCase()
    .split('x');
  if (parts.length !== 3 || !parts.every((p) => /^[0-9]+$/.test(p) && Number(p) > 0)) {
    throw new ArgError(
      `--shapes: shape '${text}': expected BxNxD with three positive integers, e.g. 32x512x768`,
    );
  }
  const [B, N, D] = parts.map(Number);
  return { mode: resolved, B, N, D };
}

function parseList<T extends string>(text: string, allowed: readonly T[], name: string): T[] {
  const items = text.split(',').filter((t) => t !== '');
  const bad = items.filter((t) => !(allowed as readonly string[]).includes(t));
  if (items.length === 0 || bad.length > 0) {
    throw new ArgError(
      `${name}: expected a comma-separated subset of ${allowed.join(',')}, received '${text}'`,
    );
  }
  return allowed.filter((t) => items.includes(t));
}

function parseCount(text: string, name: string, min: number): number {
  const v = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(v) || v < min) {
    throw new ArgError(`${name}: expected an integer >= ${min}, received '${text}'`);
  }
  return v;
}

/** None when `out` is a writable folder or can be made inside one; else what is wrong. */
export function outFolderProblem(out: string): string | null {
  const path = resolve(out);
  if (existsSync(path)) {
    if (!statSync(path).isDirectory()) return 'exists and is not a folder';
    try {
      accessSync(path, constants.W_OK | constants.X_OK);
    } catch {
      return 'folder is not writable';
    }
    return null;
  }
  let parent = dirname(path);
  while (!existsSync(parent)) parent = dirname(parent);
  try {
    if (!statSync(parent).isDirectory()) throw new Error('not a folder');
    accessSync(parent, constants.W_OK | constants.X_OK);
  } catch {
    return `cannot be created: ${parent} is not a writable folder`;
  }
  return null;
}

/** The options of a run; throws ArgError naming a bad argument, or returns null for --help. */
export function parseBenchArgs(argv: string[], env: NodeJS.ProcessEnv): BenchArgs | null {
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  const shapes: BenchShape[] = [];
  const takesValue = new Set([
    'out',
    'shapes',
    'precisions',
    'passes',
    'memory',
    'budget-s',
    'reps',
    'warmup',
    'overhead-calls',
    'gemm-n',
    'copy-mib',
    'seed',
  ]);
  const switches = new Set(['quick', 'dry-run', 'join', 'help']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h') {
      flags.add('help');
      continue;
    }
    if (!arg.startsWith('--')) throw new ArgError(`unexpected argument '${arg}' (see --help)`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (switches.has(name) && eq < 0) {
      flags.add(name);
      continue;
    }
    if (!takesValue.has(name)) throw new ArgError(`unknown option '${arg}' (see --help)`);
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined || (eq < 0 && value.startsWith('--'))) {
      throw new ArgError(`--${name}: expected a value`);
    }
    if (name === 'shapes') {
      for (const t of value.split(',').filter((t) => t !== '')) shapes.push(parseShape(t));
      if (shapes.length === 0) throw new ArgError('--shapes: expected at least one shape');
    } else {
      values[name] = value;
    }
  }
  if (flags.has('help')) return null;

  // output folder
  const out = values.out ?? env[OUT_ENV] ?? '';
  if (out === '') throw new ArgError(`expected an output folder: --out DIR or $${OUT_ENV}`);
  const problem = outFolderProblem(out);
  if (problem !== null) throw new ArgError(`--out ${out}: ${problem}`);

  // work
  const quick = flags.has('quick');
  const settings = { ...(quick ? QUICK : FULL) };
  if (values['budget-s'] !== undefined) {
    const b = Number(values['budget-s']);
    if (!(Number.isFinite(b) && b > 0)) {
      throw new ArgError(
        `--budget-s: expected a positive number of seconds, received '${values['budget-s']}'`,
      );
    }
    settings.budgetS = b;
  }
  if (values.warmup !== undefined) settings.warmup = parseCount(values.warmup, '--warmup', 0);
  if (values['overhead-calls'] !== undefined) {
    settings.overheadCalls = parseCount(values['overhead-calls'], '--overhead-calls', 0);
  }
  if (values['gemm-n'] !== undefined) settings.gemmN = parseCount(values['gemm-n'], '--gemm-n', 1);
  if (values['copy-mib'] !== undefined) {
    settings.copyBytes = parseCount(values['copy-mib'], '--copy-mib', 1) * 2 ** 20;
  }
  if (settings.gemmN > 65536) throw new ArgError('--gemm-n: expected at most 65536');
  const reps = values.reps === undefined ? null : parseCount(values.reps, '--reps', 1);
  const seed = values.seed === undefined ? 1234 : parseCount(values.seed, '--seed', 0);

  return {
    out,
    quick,
    dryRun: flags.has('dry-run'),
    join: flags.has('join'),
    shapes: shapes.length > 0 ? shapes : DEFAULT_SHAPES.map((s) => ({ ...s })),
    precisions: values.precisions
      ? parseList(values.precisions, PRECISIONS, '--precisions')
      : [...PRECISIONS],
    passes: values.passes ? parseList(values.passes, PASSES, '--passes') : [...PASSES],
    memories: values.memory ? parseList(values.memory, MEMORIES, '--memory') : [...MEMORIES],
    reps,
    settings,
    seed,
    argv,
  };
}

/** Every row the run times, in order: shape, precision, memory, pass. */
export function planRows(
  a: BenchArgs,
): { shape: BenchShape; precision: Precision; memory: Memory; pass: Pass }[] {
  const rows = [];
  for (const shape of a.shapes) {
    for (const precision of a.precisions) {
      for (const memory of a.memories) {
        for (const pass of a.passes) rows.push({ shape, precision, memory, pass });
      }
    }
  }
  return rows;
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 3 : 1);

/** The plan as lines: what will be timed, where it goes, and about how long it takes. */
export function planLines(a: BenchArgs, l2Bytes: number, l2Known: boolean): string[] {
  const s = a.settings;
  const rows = planRows(a);
  const lines = [`plan of bench/gpu/bench.ts${a.dryRun ? ' (dry run: no GPU work)' : ''}`];
  const state = existsSync(a.out) ? 'exists' : 'will be created';
  lines.push(`  out: ${join(a.out, JSON_NAME)} (folder ${state}, writable)`);
  lines.push(
    `  L2 ${mib(l2Bytes)} MiB (${l2Known ? 'queried' : 'assumed until a device is queried'})`,
  );
  lines.push(
    `  ceilings: GEMM ${s.gemmN}^3 through cuBLAS in fp32 and tf32, ${s.gemmReps} calls each;` +
      ` copy of ${mib(s.copyBytes)} MiB, ${s.copyReps} calls (read + write bytes)`,
  );
  lines.push(
    s.overheadCalls > 0
      ? `  call overhead: tokens/1x16x64 forward on DeviceTensors, median of ${s.overheadCalls}` +
          ` calls timed from Node (target under 20 us)`
      : '  call overhead: skipped (--overhead-calls 0)',
  );
  lines.push(
    `  rows: ${rows.length} = ${a.shapes.length} shapes x ${a.precisions.length} precisions` +
      ` (${a.precisions.join(',')}) x ${a.memories.length} memory (${a.memories.join(',')})` +
      ` x ${a.passes.length} passes (${a.passes.join(',')})`,
  );
  for (const shape of a.shapes) {
    const xBytes = 4 * shape.B * shape.N * shape.D;
    const r = rotation(xBytes, l2Bytes);
    const gflop = work(shape, 'forward+backward').flops / 1e9;
    lines.push(
      `    ${shapeLabel(shape).padEnd(26)} x ${mib(xBytes).padStart(9)} MiB` +
        `  ${String(r.buffers).padStart(5)} buffers${r.flush ? ' + L2 flush' : '           '}` +
        `  forward+backward ${(gflop >= 1e-3 ? gflop.toFixed(3) : gflop.toExponential(2)).padStart(10)} GFLOP`,
    );
  }
  lines.push(
    a.reps !== null
      ? `  reps: exactly ${a.reps} timed calls per row after 1 + ${s.warmup} warm-up calls`
      : `  reps: median of ${s.minReps}..${s.maxReps} timed calls per row (about` +
          ` ${s.rowTargetS} s of timed work) after 1 + ${s.warmup} warm-up calls`,
  );
  lines.push(
    '  then a quarter as many calls with each cuBLAS product timed (the GEMM share),' +
      ' and one for peak memory',
  );
  // a guess for an H200, not a measurement: ~0.8 s a row (0.3 quick), ~10 s of ceilings and setup
  const guess = 10 + rows.length * (a.quick ? 0.3 : 0.8);
  lines.push(
    `  expected: about ${(guess / 60).toFixed(1)} min on an H200; no new group starts after` +
      ` ${s.budgetS} s (--budget-s)`,
  );
  if (rows.length > 0) {
    const r = rows[0];
    lines.push(`  key of a row: ${rowKey(r.shape, r.precision, r.pass, r.memory)}`);
  }
  return lines;
}
