/**
 * The GPU throughput benchmark, JavaScript side: the package's CUDA path timed on the shapes of
 * the benchmark, forward, backward and both, fp32 and tf32, on DeviceTensors and on host
 * Float32Arrays (copies included), beside the two ceilings measured in the same run (a large cuBLAS
 * product, a large device-to-device copy), plus the overhead of one small call from Node. PyTorch's
 * half is bench/gpu/torch_bench.py; `--join` puts the two side by side. bench/gpu/check.sh runs
 * both on the GPU machine.
 *
 *   node --import tsx bench/gpu/bench.ts --out DIR              # full run, about 1 min on an H200
 *   node --import tsx bench/gpu/bench.ts --out DIR --quick      # a smoke run
 *   node --import tsx bench/gpu/bench.ts --out DIR --dry-run    # the plan; no GPU work
 *   node --import tsx bench/gpu/bench.ts --out DIR --join       # DIR/bench.json beside DIR/torch.json
 *   CONTRANORM_BENCH_OUT=DIR node --import tsx bench/gpu/bench.ts
 *
 * The logic runs without a GPU on the CPU emulation of native/emu (numbers mean nothing there):
 *
 *   bash native/emu/build.sh
 *   LD_LIBRARY_PATH=build/emu/lib CONTRANORM_NATIVE_PATH=build/emu/contranorm.node \
 *     node --import tsx bench/gpu/bench.ts --out bench/out/emu --shapes 1x16x64 --reps 2 \
 *     --warmup 0 --overhead-calls 20 --gemm-n 64 --copy-mib 1
 *
 * Writes DIR/bench.json (rewritten after each shape, so a run cut short keeps what it measured),
 * prints a line per row as it goes and a short table last. Exit status: 0 done; 1 a check failed
 * or a row could not run; 2 bad arguments; 3 no native module with the benchmark hooks, or CUDA
 * cannot run.
 *
 * Method. Each row's time is the median over many calls after warm-up, each call timed with CUDA
 * events on its own stream by the module's internal timing hooks: from the first operation of the
 * call (a forward+backward: of its forward) to the end of its last. The calls are synchronous, so
 * the host-side work of a call before its first operation is outside that span and inside the wall
 * time, which is measured around the same calls from JavaScript and kept beside it. Inputs rotate:
 * k copies of x and of dy, together over twice the L2 size, one per call (torch_bench.py does the
 * same); a shape so small that this needs more than 1024 copies uses two, with L2 flushed by a
 * device copy before each timed call. "backward" runs the forward untimed, flushes L2, then times
 * the backward. Host rows upload x (and dy) and download y (and dx) inside the call. The GEMM
 * share comes from further calls with each cuBLAS product bracketed by events too. Peak memory is
 * the module's own pool statistics: the most bytes in use during one call, less those in use
 * before it, plus the call's own DeviceTensors (x, y, and dy, dx with a backward).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { contraNorm, contraNormBackward, DeviceTensor } from '../../lib/index.ts';
import type { ContraNormOptions, ContraNormSaved } from '../../lib/index.ts';
import { loadNative } from '../../lib/native.ts';
import type { NativeAddon } from '../../lib/native.ts';
import { fill } from '../inputs.ts';
import { compare, tableLines, targetLines } from './join.ts';
import type { OurResult, OurRow, Overhead, TorchResult } from './join.ts';
import {
  ArgError,
  ASSUMED_L2_BYTES,
  COMPARISON_JSON_NAME,
  JSON_NAME,
  joinKey,
  LAYER,
  parseBenchArgs,
  planLines,
  rotation,
  rowKey,
  shapeLabel,
  TORCH_JSON_NAME,
  USAGE,
  work,
} from './plan.ts';
import type { BenchArgs, BenchShape, Memory, Pass, Precision } from './plan.ts';

const HOOKS = [
  '_benchTiming',
  '_benchTake',
  '_benchDevice',
  '_benchGemm',
  '_benchCopy',
  '_benchResetPeak',
] as const;

// -- small helpers ------------------------------------------------------------------------------

function percentile(values: readonly number[], q: number): number {
  const v = [...values].sort((a, b) => a - b);
  const pos = (v.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, v.length - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

const median = (values: readonly number[]) => percentile(values, 0.5);
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const message = (err: unknown) =>
  (err instanceof Error ? `${err.name}: ${err.message}` : String(err)).split('\n')[0].slice(0, 500);

/** The commit of the tree and whether it has changes, or null where git cannot tell. */
function commitOf(): { commit: string | null; dirty: boolean | null } {
  const head = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return { commit: null, dirty: null };
  const status = spawnSync('git', ['status', '--porcelain', '--untracked-files=no'], {
    encoding: 'utf8',
  });
  return {
    commit: head.stdout.trim(),
    dirty: status.status === 0 ? status.stdout.trim() !== '' : null,
  };
}

/** The NVIDIA driver version from nvidia-smi, or null. */
function nvidiaDriver(): string | null {
  const r = spawnSync('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim().split('\n')[0] : null;
}

const version = (v: number) => (v > 0 ? `${Math.floor(v / 1000)}.${(v % 1000) / 10}` : null);

function writeJson(path: string, value: unknown): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 1)}\n`);
  renameSync(tmp, path);
}

/** The addon when it loads with every benchmark hook, else why not. */
function benchAddon(): { addon: NativeAddon; why: null } | { addon: null; why: string } {
  const load = loadNative();
  if (load.addon === null) return { addon: null, why: `native module not loaded: ${load.error}` };
  const missing = HOOKS.filter((h) => typeof load.addon[h] !== 'function');
  if (missing.length > 0) {
    return {
      addon: null,
      why: `the native module lacks the benchmark hooks (${missing.join(', ')}): rebuild it`,
    };
  }
  return { addon: load.addon, why: null };
}

// -- the inputs of one shape --------------------------------------------------------------------

/** The rotating inputs of a shape, in host memory and (where device rows run) on the device. */
class Inputs {
  readonly k: number;
  readonly flush: boolean;
  readonly n: number;
  readonly hostX: Float32Array[] = [];
  readonly hostDy: Float32Array[] = [];
  readonly hostY: Float32Array;
  readonly hostDx: Float32Array;
  readonly devX: DeviceTensor[] = [];
  readonly devDy: DeviceTensor[] = [];
  devY: DeviceTensor | null = null;
  devDx: DeviceTensor | null = null;
  readonly weight: Float32Array;
  readonly bias: Float32Array;

  constructor(shape: BenchShape, l2Bytes: number, device: boolean, seed: number) {
    this.n = shape.B * shape.N * shape.D;
    ({ buffers: this.k, flush: this.flush } = rotation(4 * this.n, l2Bytes));
    for (let i = 0; i < this.k; i++) {
      this.hostX.push(fill(this.n, seed + 2 * i));
      this.hostDy.push(fill(this.n, seed + 2 * i + 1));
    }
    this.hostY = new Float32Array(this.n);
    this.hostDx = new Float32Array(this.n);
    this.weight = fill(shape.D, seed - 1).map((v) => 1 + 0.1 * v);
    this.bias = fill(shape.D, seed - 2).map((v) => 0.1 * v);
    if (!device) return;
    try {
      const dims = [shape.B, shape.N, shape.D];
      for (let i = 0; i < this.k; i++) {
        this.devX.push(DeviceTensor.upload(this.hostX[i], dims));
        this.devDy.push(DeviceTensor.upload(this.hostDy[i], dims));
      }
      this.devY = DeviceTensor.empty(this.n, dims);
      this.devDx = DeviceTensor.empty(this.n, dims);
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  dispose(): void {
    for (const t of [...this.devX, ...this.devDy, this.devY, this.devDx]) t?.dispose();
    this.devX.length = 0;
    this.devDy.length = 0;
  }
}

/** One call of a pass: what runs untimed before it, the timed part, and what follows. */
interface PassOps {
  /** Untimed: the forward of a backward row, and the L2 flush where the shape needs one. */
  prepare(i: number): { i: number; saved: ContraNormSaved | null };
  run(c: { i: number; saved: ContraNormSaved | null }): void;
  finish(c: { saved: ContraNormSaved | null }): void;
  /** Timed calls per call of the pass (forward+backward: 2). */
  calls: number;
  /** Device bytes of the call's own DeviceTensors, for the peak. */
  ownBytes: number;
}

// -- the run ------------------------------------------------------------------------------------

class Bench {
  readonly t0 = nowMs();
  readonly path: string;
  readonly result: Record<string, unknown> & {
    ceilings: Record<string, unknown>;
    checks: Record<string, unknown>;
    rows: OurRow[];
    overhead: Overhead | null;
  };
  failed = false;
  l2Bytes: number;

  constructor(
    readonly args: BenchArgs,
    readonly addon: NativeAddon,
  ) {
    this.path = join(args.out, JSON_NAME);
    const probe = addon.probe();
    const facts = addon._benchDevice();
    this.l2Bytes = facts.l2Bytes > 0 ? facts.l2Bytes : ASSUMED_L2_BYTES;
    const { commit, dirty } = commitOf();
    this.result = {
      schema: 1,
      script: 'bench/gpu/bench.ts',
      created: new Date().toISOString(),
      argv: args.argv,
      quick: args.quick,
      commit,
      dirty,
      node: process.version,
      device: {
        name: probe.device,
        capability: probe.computeCapability,
        memory_bytes: probe.memory,
        l2_bytes: facts.l2Bytes > 0 ? facts.l2Bytes : null,
        sm_count: facts.smCount,
        driver: nvidiaDriver(),
        cuda_driver: version(probe.driverVersion),
        cuda_runtime: version(probe.runtimeVersion),
        cublas: probe.cublas,
        module: addon.version,
      },
      constants: { ...LAYER, layernorm_affine: true, mode_features_x: '[1, N, D]' },
      method: {
        timing:
          'CUDA events on the call stream from the first operation of a call to the end of' +
          ' the last (forward+backward: forward start to backward end); median, p10, p90.' +
          ' wall: host clock around the same calls from JavaScript',
        rotation:
          'k input buffers of x and dy, together over 2x L2, one per call; over 1024 buffers:' +
          ' 2 buffers and an L2 flush (a device copy of L2 size) before each timed call',
        backward: 'forward run untimed, L2 flushed, then the backward timed',
        host: 'Float32Array x (and dy) uploaded, y (and dx) downloaded inside each call',
        gemm_share:
          'a quarter as many further calls with CUDA events around each cuBLAS product;' +
          ' non_gemm_share = median of 1 - product time / call span over those calls',
        peak_mem:
          'pool statistics: peak bytes in use during one call less those in use before it,' +
          ' plus the call own DeviceTensors (x, y; dy, dx with a backward); sizes as the pool' +
          ' holds them (rounded up). backward: the peak from after its forward',
        grads: 'dx, dScale, dWeight, dBias (the scale is a fixed 0.1; dScale is computed anyway)',
      },
      definitions: {
        flops: {
          tokens: { forward: '4*B*N^2*D', backward: '6*B*N^2*D' },
          features: { forward: '4*B*N*D^2', backward: '6*B*N*D^2' },
        },
        bytes: {
          M: 'N in tokens mode, D in features mode',
          forward: '4*(2*B*N*D + 2*B*M^2)',
          backward: '4*(3*B*N*D + 3*B*M^2)',
          'forward+backward': 'forward + backward',
        },
      },
      ceilings: {},
      checks: {},
      overhead: null,
      rows: [],
      elapsed_s: null,
      complete: false,
    };
  }

  elapsedS(): number {
    return (nowMs() - this.t0) / 1e3;
  }

  save(): void {
    this.result.elapsed_s = Math.round(this.elapsedS() * 100) / 100;
    writeJson(this.path, this.result);
  }

  options(shape: BenchShape, precision: Precision, inputs: Inputs): ContraNormOptions {
    return {
      mode: shape.mode,
      scale: LAYER.scale,
      temperature: LAYER.temperature,
      eps: LAYER.eps,
      layerNorm: { weight: inputs.weight, bias: inputs.bias, eps: LAYER.lnEps },
      precision,
      backend: 'cuda',
    };
  }

  /** A device copy of L2 size, so that the next call finds nothing of the last one in L2. */
  flushL2(): void {
    this.addon._benchCopy(this.l2Bytes, 1);
  }

  // ceilings

  ceilings(): void {
    const s = this.args.settings;
    const gemm: Record<string, unknown> = {};
    for (const precision of ['fp32', 'tf32'] as const) {
      const t = this.addon._benchGemm(s.gemmN, precision === 'tf32', s.gemmReps);
      const ms = median(t);
      gemm[precision] = {
        n: s.gemmN,
        median_ms: ms,
        p10_ms: percentile(t, 0.1),
        p90_ms: percentile(t, 0.9),
        reps: t.length,
        tflops: (2 * s.gemmN ** 3) / (ms * 1e-3) / 1e12,
      };
    }
    const t = this.addon._benchCopy(s.copyBytes, s.copyReps);
    const ms = median(t);
    const copy = {
      bytes_moved: 2 * s.copyBytes,
      median_ms: ms,
      p10_ms: percentile(t, 0.1),
      p90_ms: percentile(t, 0.9),
      reps: t.length,
      gbps: (2 * s.copyBytes) / (ms * 1e-3) / 1e9,
    };
    this.addon.emptyCache();
    this.result.ceilings = {
      gemm,
      copy,
      via: 'the module: cuBLAS GemmStridedBatchedEx, cudaMemcpyAsync',
    };
    const g = gemm as Record<string, { tflops: number }>;
    console.log(
      `ceilings: GEMM ${s.gemmN}^3 fp32 ${g.fp32.tflops.toFixed(1)} TFLOP/s,` +
        ` tf32 ${g.tf32.tflops.toFixed(1)} TFLOP/s; copy ${copy.gbps.toFixed(0)} GB/s`,
    );
  }

  // checks

  /** The CUDA path against the TypeScript path on small shapes: the rows time correct code. */
  checks(): void {
    const cases: [BenchShape, Precision, number][] = [
      [{ mode: 'tokens', B: 2, N: 33, D: 24 }, 'fp32', 1e-3],
      [{ mode: 'features', B: 2, N: 65, D: 12 }, 'fp32', 1e-3],
      [{ mode: 'tokens', B: 2, N: 33, D: 24 }, 'tf32', 3e-2],
    ];
    for (const [shape, precision, tol] of cases) {
      const label = `${shapeLabel(shape)}/${precision}`;
      const inputs = new Inputs(shape, 0, false, 77);
      const dims = [shape.B, shape.N, shape.D];
      const base = this.options(shape, precision, inputs);
      const results = (['cuda', 'cpu'] as const).map((backend) => {
        const { y, saved } = contraNorm(inputs.hostX[0], dims, { ...base, backend });
        const g = contraNormBackward(inputs.hostDy[0], saved!);
        saved!.dispose();
        return { y, dx: g.dx, dWeight: g.dWeight!, dBias: g.dBias! };
      });
      const errs: Record<string, number> = {};
      for (const name of ['y', 'dx', 'dWeight', 'dBias'] as const) {
        const [got, want] = [results[0][name], results[1][name]];
        let diff = 0;
        let top = 1;
        for (let i = 0; i < want.length; i++) {
          diff = Math.max(diff, Number.isFinite(got[i]) ? Math.abs(got[i] - want[i]) : Infinity);
          top = Math.max(top, Math.abs(want[i]));
        }
        errs[name] = diff / top;
      }
      const worst = Math.max(...Object.values(errs));
      const ok = worst <= tol;
      this.result.checks[label] = { tol, ok, max_rel_err: errs, against: 'the TypeScript path' };
      this.failed ||= !ok;
      console.log(
        `check: ${label} against the TypeScript path: ${ok ? 'ok' : 'FAILED'}` +
          ` (worst relative error ${worst.toExponential(2)}, tolerance ${tol})`,
      );
    }
  }

  // call overhead

  overhead(): void {
    const calls = this.args.settings.overheadCalls;
    const shape: BenchShape = { mode: 'tokens', B: 1, N: 16, D: 64 };
    const dims = [1, 16, 64];
    const inputs = new Inputs(shape, 0, true, 99);
    try {
      const x = inputs.devX[0];
      const base = { ...this.options(shape, 'fp32', inputs), out: inputs.devY! };
      const inference = { ...base, saveForBackward: false };
      const warm = Math.min(calls, 1000);

      // inference: no saved context
      for (let i = 0; i < warm; i++) contraNorm(x, dims, inference);
      const us = new Float64Array(calls);
      for (let i = 0; i < calls; i++) {
        const t0 = process.hrtime.bigint();
        contraNorm(x, dims, inference);
        us[i] = Number(process.hrtime.bigint() - t0) / 1e3;
      }

      // keeping the saved context, disposed outside the timed region
      const saving: number[] = [];
      for (let i = 0; i < warm + calls; i++) {
        const t0 = process.hrtime.bigint();
        const { saved } = contraNorm(x, dims, base);
        const t = Number(process.hrtime.bigint() - t0) / 1e3;
        saved?.dispose();
        if (i >= warm) saving.push(t);
      }

      // the device span of the same call
      const spans: number[] = [];
      this.addon._benchTake();
      this.addon._benchTiming(1);
      try {
        for (let i = 0; i < Math.min(calls, 2000); i++) {
          contraNorm(x, dims, inference);
          if (i % 500 === 499)
            spans.push(...this.addon._benchTake().map((r) => r.endMs - r.startMs));
        }
      } finally {
        this.addon._benchTiming(0);
      }
      spans.push(...this.addon._benchTake().map((r) => r.endMs - r.startMs));

      const list = [...us];
      const o: Overhead = {
        shape: shapeLabel(shape),
        calls,
        median_us: median(list),
        p10_us: percentile(list, 0.1),
        p90_us: percentile(list, 0.9),
        mean_us: list.reduce((a, b) => a + b, 0) / list.length,
        saving_median_us: saving.length > 0 ? median(saving) : null,
        device_median_us: spans.length > 0 ? median(spans) * 1e3 : null,
        target_us: 20,
      };
      this.result.overhead = o;
      console.log(
        `call overhead: ${o.shape} forward on DeviceTensors, ${calls} calls: median` +
          ` ${o.median_us.toFixed(1)} us (p10 ${o.p10_us.toFixed(1)}, p90 ${o.p90_us.toFixed(1)});` +
          ` keeping the saved context ${o.saving_median_us?.toFixed(1)} us;` +
          ` device span ${o.device_median_us?.toFixed(1)} us; target under 20 us`,
      );
    } finally {
      inputs.dispose();
    }
  }

  // rows

  newRow(shape: BenchShape, precision: Precision, pass: Pass, memory: Memory): OurRow {
    const { flops, bytes } = work(shape, pass);
    return {
      key: rowKey(shape, precision, pass, memory),
      join_key: joinKey(shape, precision, pass),
      mode: shape.mode,
      B: shape.B,
      N: shape.N,
      D: shape.D,
      precision,
      pass,
      memory,
      median_ms: null,
      p10_ms: null,
      p90_ms: null,
      min_ms: null,
      wall_median_ms: null,
      reps: 0,
      warmup: 0,
      buffers: 0,
      flush: false,
      flops,
      bytes,
      gflops: null,
      gbps: null,
      gemm_fraction: null,
      copy_fraction: null,
      profiled_ms: null,
      gemm_ms: null,
      products: null,
      non_gemm_share: null,
      peak_mem_bytes: null,
      finite: null,
      error: null,
    };
  }

  passOps(shape: BenchShape, precision: Precision, pass: Pass, memory: Memory, inputs: Inputs) {
    const dims = [shape.B, shape.N, shape.D];
    const base = this.options(shape, precision, inputs);
    const onDevice = memory === 'device';
    const forward = (i: number): ContraNormSaved | null =>
      onDevice
        ? contraNorm(inputs.devX[i % inputs.k], dims, { ...base, out: inputs.devY! }).saved
        : contraNorm(inputs.hostX[i % inputs.k], dims, { ...base, out: inputs.hostY }).saved;
    const backward = (i: number, saved: ContraNormSaved) => {
      if (onDevice) contraNormBackward(inputs.devDy[i % inputs.k], saved, { out: inputs.devDx! });
      else contraNormBackward(inputs.hostDy[i % inputs.k], saved, { out: inputs.hostDx });
    };
    const xBytes = 4 * inputs.n;
    const ops: PassOps = {
      calls: pass === 'forward+backward' ? 2 : 1,
      ownBytes: onDevice ? (pass === 'forward' ? 2 : 4) * xBytes : 0,
      prepare: (i) => {
        const c = { i, saved: pass === 'backward' ? forward(i) : null };
        if (pass === 'backward' || inputs.flush) this.flushL2();
        return c;
      },
      run: (c) => {
        if (pass !== 'backward') c.saved = forward(c.i);
        if (pass !== 'forward') backward(c.i, c.saved!);
      },
      finish: (c) => c.saved?.dispose(),
    };
    return ops;
  }

  /** `count` calls of a pass from input `first` on, at a timing level: spans, wall, products. */
  series(ops: PassOps, first: number, count: number, level: 0 | 1 | 2) {
    const span: number[] = [];
    const wall: number[] = [];
    const share: number[] = [];
    const product: number[] = [];
    let products = 0;
    this.addon._benchTake();
    for (let r = 0; r < count; r++) {
      const c = ops.prepare(first + r);
      let t0 = 0;
      let t1 = 0;
      try {
        this.addon._benchTiming(level);
        t0 = nowMs();
        ops.run(c);
        t1 = nowMs();
      } finally {
        this.addon._benchTiming(0);
        ops.finish(c);
      }
      wall.push(t1 - t0);
      if (level === 0) continue;
      const rec = this.addon._benchTake();
      if (rec.length !== ops.calls) {
        throw new Error(
          `expected ${ops.calls} timed calls per call of the pass, got ${rec.length}`,
        );
      }
      const ms = rec[rec.length - 1].endMs - rec[0].startMs;
      span.push(ms);
      const p = rec.reduce((a, t) => a + t.productMs, 0);
      product.push(p);
      share.push(ms > 0 ? 1 - p / ms : 0);
      products = rec.reduce((a, t) => a + t.products, 0);
    }
    return { span, wall, share, product, products };
  }

  timeRow(row: OurRow, ops: PassOps, inputs: Inputs): void {
    const s = this.args.settings;
    row.buffers = inputs.k;
    row.flush = inputs.flush;

    // warm up: the first call alone, then the warm-up calls; the host clock sizes the row
    this.series(ops, 0, 1, 0);
    const warm = s.warmup > 0 ? this.series(ops, 1, s.warmup, 0).wall : [];
    const estimate = warm.length > 0 ? median(warm) : 1;
    const reps =
      this.args.reps ??
      Math.round(Math.min(s.maxReps, Math.max(s.minReps, (s.rowTargetS * 1e3) / estimate)));

    // time
    let next = 1 + s.warmup;
    const timed = this.series(ops, next, reps, 1);
    next += reps;
    const ms = median(timed.span);
    Object.assign(row, {
      median_ms: ms,
      p10_ms: percentile(timed.span, 0.1),
      p90_ms: percentile(timed.span, 0.9),
      min_ms: Math.min(...timed.span),
      wall_median_ms: median(timed.wall),
      reps,
      warmup: 1 + s.warmup,
      gflops: row.flops / (ms * 1e-3) / 1e9,
      gbps: row.bytes / (ms * 1e-3) / 1e9,
    });
    const c = this.result.ceilings as {
      gemm?: Record<string, { tflops: number }>;
      copy?: { gbps: number };
    };
    if (c.gemm && c.copy) {
      row.gemm_fraction = row.gflops! / (c.gemm[row.precision].tflops * 1e3);
      row.copy_fraction = row.gbps! / c.copy.gbps;
    }

    // the GEMM share
    const profileReps = Math.min(reps, Math.max(3, Math.ceil(reps / 4)));
    const profiled = this.series(ops, next, profileReps, 2);
    next += profileReps;
    row.profiled_ms = median(profiled.span);
    row.gemm_ms = median(profiled.product);
    row.products = profiled.products;
    row.non_gemm_share = median(profiled.share);

    // peak memory, and the outputs are finite
    const before = this.addon.memoryStats().allocatedBytes;
    const call = ops.prepare(next);
    try {
      this.addon._benchResetPeak();
      ops.run(call);
      row.peak_mem_bytes = this.addon.memoryStats().peakAllocatedBytes - before + ops.ownBytes;
    } finally {
      ops.finish(call);
    }
    const onDevice = row.memory === 'device';
    const y = onDevice ? inputs.devY!.download() : inputs.hostY;
    const outs =
      row.pass === 'forward' ? [y] : [y, onDevice ? inputs.devDx!.download() : inputs.hostDx];
    row.finite = outs.every((a) => a.every((v) => Number.isFinite(v)));
    if (!row.finite) {
      row.error = 'an output is not finite';
      this.failed = true;
    }
  }

  printRow(row: OurRow): void {
    if (row.error && row.median_ms === null) {
      console.log(`${row.key.padEnd(50)} ${row.error}`);
      return;
    }
    const pct = (v: number | null) =>
      v === null ? '  -  ' : `${(100 * v).toFixed(1).padStart(5)}%`;
    console.log(
      `${row.key.padEnd(50)} ${row.median_ms!.toFixed(4).padStart(9)} ms` +
        ` (wall ${row.wall_median_ms!.toFixed(4)})` +
        ` ${row.gflops!.toFixed(1).padStart(9)} GFLOP/s ${row.gbps!.toFixed(1).padStart(8)} GB/s` +
        `  ${pct(row.gemm_fraction)} gemm ${pct(row.copy_fraction)} copy` +
        `  non-GEMM ${pct(row.non_gemm_share)}` +
        `  ${(row.peak_mem_bytes! / 2 ** 20).toFixed(1).padStart(8)} MiB  (${row.reps} reps)` +
        (row.error ? `  ${row.error}` : ''),
    );
  }

  runShape(shape: BenchShape): void {
    const a = this.args;
    const rows = new Map<string, OurRow>();
    for (const precision of a.precisions) {
      for (const memory of a.memories) {
        for (const pass of a.passes) {
          const row = this.newRow(shape, precision, pass, memory);
          rows.set(row.key, row);
          this.result.rows.push(row);
        }
      }
    }

    // inputs
    let inputs: Inputs;
    try {
      inputs = new Inputs(shape, this.l2Bytes, a.memories.includes('device'), a.seed);
    } catch (err) {
      for (const row of rows.values()) {
        row.error = `inputs: ${message(err)}`;
        this.printRow(row);
      }
      this.failed = true;
      this.addon.emptyCache();
      return;
    }

    try {
      for (const precision of a.precisions) {
        const group = [...rows.values()].filter((r) => r.precision === precision);
        if (this.elapsedS() > a.settings.budgetS) {
          for (const row of group) {
            row.error = `skipped: --budget-s ${a.settings.budgetS} reached`;
            this.printRow(row);
          }
          continue;
        }
        for (const row of group) {
          const ops = this.passOps(
            shape,
            precision,
            row.pass as Pass,
            row.memory as Memory,
            inputs,
          );
          try {
            this.timeRow(row, ops, inputs);
          } catch (err) {
            row.error = message(err);
            this.failed = true;
            this.addon._benchTiming(0);
            this.addon._benchTake();
          }
          this.printRow(row);
        }
        this.save();
      }
    } finally {
      inputs.dispose();
      this.addon.emptyCache();
    }
  }

  printTable(): void {
    const torchPath = join(this.args.out, TORCH_JSON_NAME);
    const torch = existsSync(torchPath) ? readTorch(torchPath) : null;
    console.log('');
    for (const line of reportLines(this.result as unknown as OurResult, torch)) console.log(line);
    console.log(`full results: ${this.path}`);
  }
}

// -- reading results and the joined report ------------------------------------------------------

function readTorch(path: string): TorchResult | null {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as TorchResult;
  } catch {
    return null;
  }
}

/** The header lines, the table and the targets, ours beside PyTorch's where torch.json is given. */
function reportLines(ours: OurResult, torch: TorchResult | null): string[] {
  const c = compare(ours, torch);
  const d = ours.device as Record<string, unknown>;
  const lines = [
    `contranorm on ${d.name} (driver ${d.driver ?? '?'}, CUDA runtime ${d.cuda_runtime},` +
      ` ${d.cublas}), commit ${ours.commit ?? '?'}, ${ours.created}`,
  ];
  const ceil = (x: Record<string, unknown> | undefined) => {
    const g = (x?.gemm ?? null) as Record<string, { n: number; tflops: number }> | null;
    const c2 = (x?.copy ?? null) as { gbps: number } | null;
    return g && c2 && g.fp32 && g.tf32
      ? `GEMM ${g.fp32.n}^3 fp32 ${g.fp32.tflops.toFixed(1)}, tf32 ${g.tf32.tflops.toFixed(1)}` +
          ` TFLOP/s; copy ${c2.gbps.toFixed(0)} GB/s`
      : 'not measured';
  };
  lines.push(`ceilings, ours: ${ceil(ours.ceilings)}`);
  if (torch) {
    const td = torch.device as Record<string, unknown>;
    lines.push(`ceilings, torch: ${ceil(torch.ceilings)}`);
    lines.push(`PyTorch ${td.torch} (CUDA ${td.cuda_runtime}), torch.json of ${torch.created}`);
  } else {
    lines.push('PyTorch: no torch.json in the results folder (its columns are empty)');
  }
  lines.push(
    'ours ms: CUDA events, DeviceTensors; host ms: Float32Arrays, copies included;' +
      ' /eager, /comp: ours over PyTorch (under 1 is faster)',
  );
  lines.push(...tableLines(c), ...targetLines(c));
  const o = ours.overhead;
  if (o) {
    lines.push(
      `call overhead: ${o.shape} forward, DeviceTensors, ${o.calls} calls from Node: median` +
        ` ${o.median_us.toFixed(1)} us (device span ${o.device_median_us?.toFixed(1) ?? '-'} us)`,
    );
  }
  return lines;
}

function joinCommand(args: BenchArgs): number {
  const oursPath = join(args.out, JSON_NAME);
  if (!existsSync(oursPath)) {
    console.log(`bench: --join: ${oursPath} not found; run the benchmark first`);
    return 1;
  }
  const ours = JSON.parse(readFileSync(oursPath, 'utf8')) as OurResult;
  const torchPath = join(args.out, TORCH_JSON_NAME);
  const torch = existsSync(torchPath) ? readTorch(torchPath) : null;
  const c = compare(ours, torch);
  const out = join(args.out, COMPARISON_JSON_NAME);
  writeJson(out, {
    schema: 1,
    created: new Date().toISOString(),
    sources: { ours: JSON_NAME, torch: torch ? TORCH_JSON_NAME : null },
    commit: ours.commit,
    device: ours.device,
    torch_device: torch?.device ?? null,
    ceilings: { ours: ours.ceilings, torch: torch?.ceilings ?? null },
    overhead: ours.overhead,
    ...c,
  });
  for (const line of reportLines(ours, torch)) console.log(line);
  console.log(`comparison: ${out}`);
  return 0;
}

function dryRun(args: BenchArgs): number {
  for (const line of planLines(args, ASSUMED_L2_BYTES, false)) console.log(line);
  const load = loadNative();
  if (load.addon === null) {
    console.log(`native module: not loaded here (${load.error})`);
  } else {
    const b = benchAddon();
    const p = load.addon.probe();
    console.log(
      `native module ${load.addon.version}: ` +
        (b.addon ? 'benchmark hooks present' : b.why) +
        `; CUDA ${p.ok ? `runs on ${p.device}` : `cannot run here (${p.reason})`}`,
    );
  }
  console.log('dry run: arguments and output folder checked; nothing timed');
  return 0;
}

function run(args: BenchArgs): number {
  const b = benchAddon();
  if (b.addon === null) {
    console.log(`bench: ${b.why}`);
    return 3;
  }
  const probe = b.addon.probe();
  if (!probe.ok) {
    console.log(`bench: CUDA cannot run: ${probe.reason}; use --dry-run here`);
    return 3;
  }
  mkdirSync(args.out, { recursive: true });
  const bench = new Bench(args, b.addon);
  for (const line of planLines(args, bench.l2Bytes, bench.l2Bytes !== ASSUMED_L2_BYTES)) {
    console.log(line);
  }
  console.log(`device: ${probe.device} (${probe.computeCapability}), module ${b.addon.version}`);

  // ceilings, checks and the call overhead, then the rows
  try {
    bench.ceilings();
  } catch (err) {
    bench.result.ceilings = {};
    bench.result.ceilings_error = message(err);
    console.log(`ceilings: ${message(err)}`);
    b.addon.emptyCache();
  }
  try {
    bench.checks();
  } catch (err) {
    bench.result.checks.error = message(err);
    bench.failed = true;
    console.log(`checks: ${message(err)}`);
  }
  if (args.settings.overheadCalls > 0) {
    try {
      bench.overhead();
    } catch (err) {
      bench.result.overhead_error = message(err);
      bench.failed = true;
      console.log(`call overhead: ${message(err)}`);
    }
  }
  bench.save();
  for (const shape of args.shapes) {
    bench.runShape(shape);
    bench.save();
  }
  bench.result.complete = true;
  bench.save();
  bench.printTable();
  if (bench.failed) console.log('bench: a check failed or a row could not run');
  return bench.failed ? 1 : 0;
}

function main(argv: string[]): number {
  let args: BenchArgs | null;
  try {
    args = parseBenchArgs(argv, process.env);
  } catch (err) {
    if (!(err instanceof ArgError)) throw err;
    process.stderr.write(`bench: ${err.message}\n`);
    return 2;
  }
  if (args === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.join) return joinCommand(args);
  if (args.dryRun) return dryRun(args);
  return run(args);
}

process.exitCode = main(process.argv.slice(2));
