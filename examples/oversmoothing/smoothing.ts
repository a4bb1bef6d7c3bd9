/**
 * The two oversmoothing operators, without weights: attention smoothing for tokens, and
 * normalized-adjacency propagation for graph nodes. Each maps `[B, N, D]` to a new buffer.
 */
import type { Csr } from './cora.ts';

/**
 * One round of weightless self-attention per item: `x <- softmax(x x^T / sqrt(D)) x`, with
 * the row maximum subtracted before `exp`. Accumulates in float64.
 *
 * @example
 * const next = attentionSmooth(x, 128, 16, 49);
 */
export function attentionSmooth(x: Float32Array, B: number, N: number, D: number): Float32Array {
  const y = new Float32Array(B * N * D);
  const p = new Float64Array(N);
  const acc = new Float64Array(D);
  const inv = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) {
    const base = b * N * D;
    for (let i = 0; i < N; i++) {
      const qi = base + i * D;

      // scores
      let max = -Infinity;
      for (let j = 0; j < N; j++) {
        const kj = base + j * D;
        let dot = 0;
        for (let c = 0; c < D; c++) dot += x[qi + c] * x[kj + c];
        p[j] = dot * inv;
        if (p[j] > max) max = p[j];
      }

      // softmax
      let sum = 0;
      for (let j = 0; j < N; j++) {
        p[j] = Math.exp(p[j] - max);
        sum += p[j];
      }

      // mix
      acc.fill(0);
      for (let j = 0; j < N; j++) {
        const w = p[j] / sum;
        const vj = base + j * D;
        for (let c = 0; c < D; c++) acc[c] += w * x[vj + c];
      }
      for (let c = 0; c < D; c++) y[qi + c] = acc[c];
    }
  }
  return y;
}

/**
 * One round of graph propagation: `x <- A x` for a sparse `A` `[N, N]` (here
 * `D^-1/2 (A + I) D^-1/2`) and node features `x` `[N, D]`. Accumulates in float64.
 *
 * @example
 * const next = propagate(normalizedAdjacency(graph), x, 64);
 */
export function propagate(A: Csr, x: Float32Array, D: number): Float32Array {
  const y = new Float32Array(A.rows * D);
  const acc = new Float64Array(D);
  for (let i = 0; i < A.rows; i++) {
    acc.fill(0);
    for (let k = A.indptr[i]; k < A.indptr[i + 1]; k++) {
      const w = A.values[k];
      const j = A.indices[k] * D;
      for (let c = 0; c < D; c++) acc[c] += w * x[j + c];
    }
    for (let c = 0; c < D; c++) y[i * D + c] = acc[c];
  }
  return y;
}
