/**
 * Benchmark inputs: deterministic values from a linear congruential sequence, cheap enough to
 * fill hundreds of megabytes, and the same on every machine.
 */

/** `n` values in [-1, 1) from `seed`. */
export function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}
