/**
 * One dataset through R rounds of a smoothing operator, twice from the same start: plain, and
 * with ContraNorm after every round. Records the collapse metrics at depths 0, 1, 2, 4, ...
 * and times ContraNorm forward and backward on the input it saw at one depth.
 */
import { performance } from 'node:perf_hooks';

import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

import { contraNorm, contraNormBackward } from '../../lib/index.ts';
import type { ContraNormOptions, Shape } from '../../lib/index.ts';
import { effectiveRank, meanPairwiseCosine } from './metrics.ts';
import type { Progress } from './progress.ts';

/** The metrics of both runs after `depth` rounds. */
export interface DepthRow {
  depth: number;
  cosPlain: number;
  cosContra: number;
  erankPlain: number;
  erankContra: number;
}

/** Median time of ContraNorm calls on the input of round `depth`. */
export interface Timing {
  depth: number;
  reps: number;
  forwardMs: number;
  backwardMs: number;
  /** The backend that ran the timed calls. */
  backend: 'cpu' | 'cuda';
}

/** What `runDataset` measured. */
export interface DatasetResult {
  name: string;
  shape: Shape;
  rows: DepthRow[];
  timing: Timing;
}

/** What `runDataset` runs. */
export interface DatasetRun {
  name: string;
  /** The starting point `[B, N, D]`; not modified. */
  x: Float32Array;
  shape: Shape;
  /** One round of smoothing; returns a new buffer. */
  step: (x: Float32Array) => Float32Array;
  rounds: number;
  /** ContraNorm options of every call (the shape's default backend unless they say). */
  options: ContraNormOptions;
  /** The round whose ContraNorm input is reused for timing. */
  timingDepth: number;
  /** Timed forward and backward calls (after one untimed call of each). */
  reps: number;
  progress: Progress;
}

/** Depths 0, 1, 2, 4, ... up to `rounds`, and `rounds` itself. */
export function reportedDepths(rounds: number): number[] {
  const depths = [0];
  for (let d = 1; d < rounds; d *= 2) depths.push(d);
  if (rounds > 0) depths.push(rounds);
  return depths;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Runs both arms, `x <- step(x)` and `x <- contraNorm(step(x))`, for `rounds` rounds, then
 * times ContraNorm on the input it received in round `timingDepth`.
 */
export function runDataset(run: DatasetRun): DatasetResult {
  const { name, shape, step, rounds, options, progress } = run;
  const [B, N, D] = shape;
  const depths = new Set(reportedDepths(rounds));
  const rows: DepthRow[] = [];
  const record = (depth: number, plain: Float32Array, contra: Float32Array) => {
    rows.push({
      depth,
      cosPlain: meanPairwiseCosine(plain, B, N, D),
      cosContra: meanPairwiseCosine(contra, B, N, D),
      erankPlain: effectiveRank(plain, B, N, D),
      erankContra: effectiveRank(contra, B, N, D),
    });
  };

  // rounds
  let plain = run.x;
  let contra = run.x;
  let timingInput: Float32Array | null = null;
  record(0, plain, contra);
  progress.update(`${name}: round`, 0, rounds, true);
  for (let r = 1; r <= rounds; r++) {
    plain = step(plain);
    const smoothed = step(contra);
    if (r === run.timingDepth) timingInput = smoothed;
    contra = contraNorm(smoothed, shape, { ...options, saveForBackward: false }).y;
    if (depths.has(r)) record(r, plain, contra);
    progress.update(`${name}: round`, r, rounds);
  }
  timingInput ??= step(contra);

  // timing: one untimed call of each, then the median of `reps`
  const rng = xoroshiro128plus(7);
  const dy = new Float32Array(B * N * D);
  for (let i = 0; i < dy.length; i++) dy[i] = 2 * uniformFloat64(rng) - 1;
  const forwardMs: number[] = [];
  const backwardMs: number[] = [];
  let backend: 'cpu' | 'cuda' = 'cpu';
  for (let rep = 0; rep <= run.reps; rep++) {
    progress.update(`${name}: timing ContraNorm, call`, rep, run.reps, true);
    const t0 = performance.now();
    const { saved } = contraNorm(timingInput, shape, options);
    const t1 = performance.now();
    if (saved === null) throw new Error('contraNorm returned no saved context');
    contraNormBackward(dy, saved);
    const t2 = performance.now();
    backend = saved.backend;
    saved.dispose();
    if (rep === 0) continue;
    forwardMs.push(t1 - t0);
    backwardMs.push(t2 - t1);
  }
  progress.clear();

  const timing: Timing = {
    depth: run.timingDepth,
    reps: run.reps,
    forwardMs: median(forwardMs),
    backwardMs: median(backwardMs),
    backend,
  };
  return { name, shape, rows, timing };
}
