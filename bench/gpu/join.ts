/**
 * Joins the two halves of the GPU benchmark: our rows (bench.json, written by bench.ts) with
 * PyTorch's (torch.json, written by torch_bench.py) by shape, precision and pass, gives our time
 * over theirs per row, checks the targets of the benchmark, and formats the short table. Pure:
 * reads and writes nothing itself.
 */

/** One of our rows as bench.json holds it. */
export interface OurRow {
  key: string;
  join_key: string;
  mode: string;
  B: number;
  N: number;
  D: number;
  precision: string;
  pass: string;
  memory: string;
  /** CUDA events: from the first operation of the first call to the end of the last. */
  median_ms: number | null;
  p10_ms: number | null;
  p90_ms: number | null;
  min_ms: number | null;
  /** Host clock around the same calls, JavaScript included. */
  wall_median_ms: number | null;
  reps: number;
  warmup: number;
  buffers: number;
  flush: boolean;
  flops: number;
  bytes: number;
  gflops: number | null;
  gbps: number | null;
  gemm_fraction: number | null;
  copy_fraction: number | null;
  /** The calls timed with each cuBLAS product bracketed too: their time, and the products'. */
  profiled_ms: number | null;
  gemm_ms: number | null;
  products: number | null;
  non_gemm_share: number | null;
  peak_mem_bytes: number | null;
  finite: boolean | null;
  error: string | null;
}

/** The call-overhead measurement of bench.json. */
export interface Overhead {
  shape: string;
  calls: number;
  median_us: number;
  p10_us: number;
  p90_us: number;
  mean_us: number;
  /** The same calls keeping their saved context (disposed outside the timed region). */
  saving_median_us: number | null;
  /** CUDA events: the call's own device span, first operation to last. */
  device_median_us: number | null;
  target_us: number;
}

/** What the join reads from bench.json. */
export interface OurResult {
  created: string;
  commit: string | null;
  device: Record<string, unknown>;
  ceilings: Record<string, unknown>;
  overhead: Overhead | null;
  rows: OurRow[];
}

/** What the join reads from torch.json (torch_bench.py). */
export interface TorchResult {
  created: string;
  device: Record<string, unknown>;
  ceilings: Record<string, unknown>;
  rows: {
    key: string;
    median_ms: number | null;
    peak_mem_bytes: number | null;
    error: string | null;
  }[];
}

/** One line of the comparison: our device and host rows beside PyTorch's eager and compile. */
export interface ComparedRow {
  key: string;
  shape: string;
  precision: string;
  pass: string;
  ours_ms: number | null;
  ours_wall_ms: number | null;
  host_ms: number | null;
  eager_ms: number | null;
  compile_ms: number | null;
  /** Our time over theirs: under 1 is faster. */
  ours_over_eager: number | null;
  ours_over_compile: number | null;
  gflops: number | null;
  gemm_fraction: number | null;
  gbps: number | null;
  copy_fraction: number | null;
  non_gemm_share: number | null;
  peak_mem_bytes: number | null;
  eager_peak_mem_bytes: number | null;
  /** Why a cell is empty: our row's or PyTorch's error. */
  note: string | null;
}

/** A target of the benchmark, measured against rather than asserted. */
export interface Target {
  what: string;
  value: number | null;
  limit: number;
  /** null: not measured in this run. */
  met: boolean | null;
}

export interface Comparison {
  rows: ComparedRow[];
  targets: Target[];
}

const ratio = (a: number | null, b: number | null) =>
  a === null || b === null || b <= 0 ? null : a / b;

/** The join key of a torch.json row: its key without the impl. */
function torchJoinKey(key: string): { join: string; impl: string } {
  const cut = key.lastIndexOf('/');
  return { join: key.slice(0, cut), impl: key.slice(cut + 1) };
}

/** Our rows beside PyTorch's (torch may be null: its columns stay empty), and the targets. */
export function compare(ours: OurResult, torch: TorchResult | null): Comparison {
  const theirs = new Map<string, TorchResult['rows'][number]>();
  for (const r of torch?.rows ?? []) {
    const { join, impl } = torchJoinKey(r.key);
    theirs.set(`${join}|${impl}`, r);
  }
  const mine = new Map<string, OurRow>();
  for (const r of ours.rows) mine.set(`${r.join_key}|${r.memory}`, r);

  // one line per join key, in our order
  const keys = [...new Set(ours.rows.map((r) => r.join_key))];
  const rows = keys.map((key): ComparedRow => {
    const dev = mine.get(`${key}|device`) ?? null;
    const host = mine.get(`${key}|host`) ?? null;
    const eager = theirs.get(`${key}|eager`) ?? null;
    const compiled = theirs.get(`${key}|compile`) ?? null;
    const any = (dev ?? host)!;
    const okMs = (r: { median_ms: number | null; error: string | null } | null) =>
      r === null || r.error ? null : r.median_ms;
    const ours_ms = okMs(dev);
    const eager_ms = okMs(eager);
    const compile_ms = okMs(compiled);
    const notes = [
      dev?.error ? `ours: ${dev.error}` : null,
      eager?.error ? `eager: ${eager.error}` : null,
      compiled?.error ? `compile: ${compiled.error}` : null,
    ].filter((n) => n !== null);
    return {
      key,
      shape: `${any.mode}/${any.B}x${any.N}x${any.D}`,
      precision: any.precision,
      pass: any.pass,
      ours_ms,
      ours_wall_ms: dev?.error ? null : (dev?.wall_median_ms ?? null),
      host_ms: okMs(host),
      eager_ms,
      compile_ms,
      ours_over_eager: ratio(ours_ms, eager_ms),
      ours_over_compile: ratio(ours_ms, compile_ms),
      gflops: dev?.gflops ?? null,
      gemm_fraction: dev?.gemm_fraction ?? null,
      gbps: dev?.gbps ?? null,
      copy_fraction: dev?.copy_fraction ?? null,
      non_gemm_share: dev?.non_gemm_share ?? null,
      peak_mem_bytes: dev?.peak_mem_bytes ?? null,
      eager_peak_mem_bytes: eager?.error ? null : (eager?.peak_mem_bytes ?? null),
      note: notes.length > 0 ? notes.join('; ') : null,
    };
  });
  return { rows, targets: targets(rows, ours.overhead) };
}

/** The targets: forward+backward at 32x512x768, and the call overhead. */
function targets(rows: ComparedRow[], overhead: Overhead | null): Target[] {
  const out: Target[] = [];
  const check = (what: string, value: number | null, limit: number, below: boolean) =>
    out.push({
      what,
      value,
      limit,
      met: value === null ? null : below ? value < limit : value <= limit,
    });
  for (const precision of ['fp32', 'tf32']) {
    const key = `tokens/32x512x768/${precision}/forward+backward`;
    const row = rows.find((r) => r.key === key) ?? null;
    check(`${key}: ours/eager at most 1/1.5`, row?.ours_over_eager ?? null, 1 / 1.5, false);
    check(`${key}: ours/compile at most 1`, row?.ours_over_compile ?? null, 1, false);
    check(`${key}: non-GEMM share under 25%`, row?.non_gemm_share ?? null, 0.25, true);
  }
  check(
    'call overhead, tokens/1x16x64 forward on DeviceTensors: median under 20 us',
    overhead?.median_us ?? null,
    20,
    true,
  );
  return out;
}

function cell(v: number | null, digits: number, scale = 1): string {
  return v === null || !Number.isFinite(v) ? '-' : (v * scale).toFixed(digits);
}

const PASS_SHORT: Record<string, string> = {
  forward: 'fwd',
  backward: 'bwd',
  'forward+backward': 'fwd+bwd',
};

/** The short table: a line per (shape, precision, pass), ours on DeviceTensors against PyTorch. */
export function tableLines(c: Comparison): string[] {
  const cols: [string, number, (r: ComparedRow) => string][] = [
    ['ours ms', 9, (r) => cell(r.ours_ms, 4)],
    ['host ms', 9, (r) => cell(r.host_ms, 3)],
    ['eager ms', 9, (r) => cell(r.eager_ms, 4)],
    ['comp ms', 9, (r) => cell(r.compile_ms, 4)],
    ['/eager', 7, (r) => cell(r.ours_over_eager, 2)],
    ['/comp', 7, (r) => cell(r.ours_over_compile, 2)],
    ['TFLOP/s', 8, (r) => cell(r.gflops, 1, 1e-3)],
    ['%gemm', 6, (r) => cell(r.gemm_fraction, 0, 100)],
    ['%copy', 6, (r) => cell(r.copy_fraction, 0, 100)],
    ['nonGEMM', 8, (r) => (r.non_gemm_share === null ? '-' : cell(r.non_gemm_share, 0, 100) + '%')],
    ['peak MiB', 9, (r) => cell(r.peak_mem_bytes, 1, 2 ** -20)],
  ];
  const head =
    `${'shape'.padEnd(24)} ${'prec'.padEnd(4)} ${'pass'.padEnd(7)}` +
    cols.map(([h, w]) => ` ${h.padStart(w)}`).join('');
  const lines = [head, '-'.repeat(head.length)];
  for (const r of c.rows) {
    lines.push(
      `${r.shape.padEnd(24)} ${r.precision.padEnd(4)} ${(PASS_SHORT[r.pass] ?? r.pass).padEnd(7)}` +
        cols.map(([, w, f]) => ` ${f(r).padStart(w)}`).join(''),
    );
  }
  return lines;
}

/** One line per target: the value, the limit, and met / NOT met / not measured. */
export function targetLines(c: Comparison): string[] {
  return c.targets.map((t) => {
    const value = t.value === null ? '-' : t.value.toPrecision(3);
    const verdict = t.met === null ? 'not measured' : t.met ? 'met' : 'NOT met';
    return `target: ${t.what}: ${value} (limit ${Number(t.limit.toPrecision(3))}): ${verdict}`;
  });
}
