/**
 * Seeded inputs for the tests: random arrays, and the matrix of option combinations every
 * forward and backward check runs over. The same seed gives the same values on every machine.
 */
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

import type { ContraNormOptions, LayerNormOptions } from '../lib/types.ts';

/** `[B, N, D]` as the tests write it. */
export type TestShape = [B: number, N: number, D: number];

/** A small seeded generator: uniform, normal and integer draws. */
export class Rng {
  #gen: ReturnType<typeof xoroshiro128plus>;
  #spare: number | null = null;

  constructor(seed: number) {
    this.#gen = xoroshiro128plus(seed | 0);
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return uniformFloat64(this.#gen);
  }

  /** Integer in [from, to], both included. */
  int(from: number, to: number): number {
    return uniformInt(this.#gen, from, to);
  }

  /** Standard normal (Box-Muller, the second value kept for the next call). */
  normal(): number {
    if (this.#spare !== null) {
      const v = this.#spare;
      this.#spare = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.uniform() < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }
}

/** `n` values drawn from a normal distribution of standard deviation `scale`. */
export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

/** The shape `optionMatrix` sizes its vectors, masks and lengths for when none is given. */
export const MATRIX_SHAPE: TestShape = [3, 7, 6];

/**
 * Lengths of B items cycling through a full item, an empty one and a partial one, so every
 * batch of three or more holds a 0 and a full length.
 */
export function cyclingLengths(B: number, N: number, rng: Rng): Int32Array {
  const lengths = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const kind = b % 3;
    lengths[b] = kind === 0 ? N : kind === 1 ? 0 : N <= 1 ? N : rng.int(1, N - 1);
  }
  return lengths;
}

/**
 * A random `[M, M]` mask (about 30% excluded) with, when M > 1, row 0 and column M - 1 fully
 * excluded.
 */
export function sharedMask(M: number, rng: Rng): Uint8Array {
  const mask = new Uint8Array(M * M);
  for (let i = 0; i < M * M; i++) mask[i] = rng.chance(0.3) ? 1 : 0;
  if (M > 1) {
    for (let j = 0; j < M; j++) mask[j] = 1;
    for (let i = 0; i < M; i++) mask[i * M + M - 1] = 1;
  }
  return mask;
}

/**
 * A random `[B, M, M]` mask: item 0 has a fully excluded row, item 1 a fully excluded column,
 * item 2 every entry excluded, the rest about 30% excluded at random.
 */
export function batchedMask(B: number, M: number, rng: Rng): Uint8Array {
  const mask = new Uint8Array(B * M * M);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.chance(0.3) ? 1 : 0;
  for (let b = 0; b < B; b++) {
    const base = b * M * M;
    if (b === 0 && M > 0) {
      const row = rng.int(0, M - 1);
      for (let j = 0; j < M; j++) mask[base + row * M + j] = 1;
    } else if (b === 1 && M > 0) {
      const col = rng.int(0, M - 1);
      for (let i = 0; i < M; i++) mask[base + i * M + col] = 1;
    } else if (b === 2) {
      mask.fill(1, base, base + M * M);
    }
  }
  return mask;
}

type LayerNormKind = 'off' | 'plain' | 'weight' | 'weight+bias' | 'eps';
type MaskKind = 'none' | 'shared' | 'batched';

/**
 * Option objects for `contraNorm` over the full cross product of: scale scalar / per-channel
 * vector; scaleParam linear / exp; identity; dualNorm; preNorm; temperature 0.5, 1, 2;
 * layerNorm false / {} / { weight } / { weight, bias } / { eps }; lengths absent / present
 * (with a 0 and a full length when B >= 2); mask absent / `[M, M]` / `[B, M, M]` (with fully
 * excluded rows and columns). 2,880 objects per mode, each with `mode` set and no `backend`.
 *
 * `seed` draws the vector, mask and length contents; `shape` sizes them.
 */
export function optionMatrix(
  mode: 'tokens' | 'features',
  seed = 1,
  shape: TestShape = MATRIX_SHAPE,
): ContraNormOptions[] {
  const [B, N, D] = shape;
  const M = mode === 'tokens' ? N : D;
  const rng = new Rng(seed);
  const list: ContraNormOptions[] = [];
  const layerNorms: LayerNormKind[] = ['off', 'plain', 'weight', 'weight+bias', 'eps'];
  const masks: MaskKind[] = ['none', 'shared', 'batched'];
  for (const vectorScale of [false, true])
    for (const scaleParam of ['linear', 'exp'] as const)
      for (const identity of [false, true])
        for (const dualNorm of [false, true])
          for (const preNorm of [false, true])
            for (const temperature of [0.5, 1, 2])
              for (const ln of layerNorms)
                for (const withLengths of [false, true])
                  for (const maskKind of masks) {
                    const o: ContraNormOptions = { mode, scaleParam, identity, dualNorm, preNorm };
                    o.temperature = temperature;
                    o.scale = randomScale(vectorScale ? D : 0, scaleParam, rng);
                    const layerNorm = randomLayerNorm(ln, D, rng);
                    if (layerNorm !== undefined) o.layerNorm = layerNorm;
                    if (withLengths) o.lengths = cyclingLengths(B, N, rng);
                    if (maskKind === 'shared') o.mask = sharedMask(M, rng);
                    if (maskKind === 'batched') o.mask = batchedMask(B, M, rng);
                    list.push(o);
                  }
  return list;
}

function randomScale(D: number, scaleParam: 'linear' | 'exp', rng: Rng): number | Float32Array {
  // 'exp' needs s > 0; 'linear' also takes negative values.
  const draw = () =>
    scaleParam === 'exp' ? 0.05 + 0.6 * rng.uniform() : -0.4 + 1.2 * rng.uniform();
  if (D === 0) return Math.fround(draw());
  const s = new Float32Array(D);
  for (let d = 0; d < D; d++) s[d] = draw();
  return s;
}

function randomLayerNorm(
  kind: LayerNormKind,
  D: number,
  rng: Rng,
): LayerNormOptions | false | undefined {
  const vec = (lo: number, hi: number) => {
    const v = new Float32Array(D);
    for (let d = 0; d < D; d++) v[d] = lo + (hi - lo) * rng.uniform();
    return v;
  };
  switch (kind) {
    case 'off':
      return false;
    case 'plain':
      return rng.chance(0.5) ? {} : undefined;
    case 'weight':
      return { weight: vec(0.5, 1.5) };
    case 'weight+bias':
      return { weight: vec(-1.5, 1.5), bias: vec(-1, 1) };
    case 'eps':
      return { eps: rng.pick([1e-5, 1e-3, 0.1]) };
  }
}

/** `count` entries of `list` drawn without replacement by a seeded shuffle, in list order. */
export function sampleOf<T>(list: readonly T[], count: number, seed: number): T[] {
  const rng = new Rng(seed);
  const index = list.map((_, i) => i);
  for (let i = index.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [index[i], index[j]] = [index[j], index[i]];
  }
  return index
    .slice(0, Math.min(count, list.length))
    .sort((a, b) => a - b)
    .map((i) => list[i]);
}

/** A short label of an option object for test names and failure messages. */
export function describeOptions(o: ContraNormOptions): string {
  const parts: string[] = [o.mode ?? 'tokens'];
  if (o.scale instanceof Float32Array) parts.push(`scale[${o.scale.length}]`);
  else if (o.scale !== undefined) parts.push(`scale=${o.scale.toPrecision(3)}`);
  if (o.scaleParam === 'exp') parts.push('exp');
  if (o.identity) parts.push('identity');
  if (o.dualNorm) parts.push('dualNorm');
  if (o.preNorm) parts.push('preNorm');
  if (o.temperature !== undefined) parts.push(`tau=${o.temperature}`);
  if (o.layerNorm === false) parts.push('noLN');
  else if (o.layerNorm !== undefined) {
    const keys = Object.keys(o.layerNorm);
    parts.push(keys.length === 0 ? 'LN{}' : `LN{${keys.join(',')}}`);
  }
  if (o.lengths !== undefined) parts.push(`lengths=[${Array.from(o.lengths).join(',')}]`);
  if (o.mask !== undefined) parts.push(`mask[${o.mask.length}]`);
  if (o.eps !== undefined) parts.push(`eps=${o.eps}`);
  return parts.join(' ');
}
