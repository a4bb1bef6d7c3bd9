/**
 * How collapsed a set of rows is. Per item of `[B, N, D]`, averaged over the items:
 * - mean pairwise cosine similarity over the distinct pairs of non-zero rows (1: all rows
 *   point the same way);
 * - effective rank (Roy & Vetterli, 2007): `exp(H(p))` with `p_k = sigma_k / sum(sigma)` the
 *   normalized singular values of the item's `[N, D]` matrix (1: rank one; at most min(N, D)).
 */

/**
 * Mean of `cos(x_i, x_j)` over the pairs `i < j` of non-zero rows of each item, averaged over
 * the items that have at least two such rows. With `u_i` the unit rows, the sum over distinct
 * pairs is `(||sum u_i||^2 - n) / 2`, so this costs O(N D), not O(N^2 D).
 *
 * @example
 * meanPairwiseCosine(new Float32Array([1, 0, 2, 0]), 1, 2, 2); // 1
 */
export function meanPairwiseCosine(x: Float32Array, B: number, N: number, D: number): number {
  const total = new Float64Array(D);
  let sum = 0;
  let items = 0;
  for (let b = 0; b < B; b++) {
    total.fill(0);
    let n = 0;
    for (let i = 0; i < N; i++) {
      const row = (b * N + i) * D;
      let sq = 0;
      for (let c = 0; c < D; c++) sq += x[row + c] * x[row + c];
      if (sq === 0) continue;
      const inv = 1 / Math.sqrt(sq);
      for (let c = 0; c < D; c++) total[c] += x[row + c] * inv;
      n++;
    }
    if (n < 2) continue;
    let norm2 = 0;
    for (let c = 0; c < D; c++) norm2 += total[c] * total[c];
    sum += (norm2 - n) / (n * (n - 1));
    items++;
  }
  return items === 0 ? NaN : sum / items;
}

/**
 * Effective rank of each item's `[N, D]` matrix, averaged over the items. The singular values
 * are the square roots of the eigenvalues of the smaller Gram matrix (`X X^T` or `X^T X`),
 * formed and diagonalized in float64 by the Jacobi method. An all-zero item counts as 0.
 *
 * @example
 * effectiveRank(new Float32Array([1, 0, 0, 1]), 1, 2, 2); // 2
 */
export function effectiveRank(x: Float32Array, B: number, N: number, D: number): number {
  const K = Math.min(N, D);
  const G = new Float64Array(K * K);
  let sum = 0;
  for (let b = 0; b < B; b++) {
    const base = b * N * D;

    // gram
    G.fill(0);
    if (N <= D) {
      for (let i = 0; i < N; i++) {
        for (let j = 0; j <= i; j++) {
          let dot = 0;
          for (let c = 0; c < D; c++) dot += x[base + i * D + c] * x[base + j * D + c];
          G[i * K + j] = dot;
          G[j * K + i] = dot;
        }
      }
    } else {
      for (let r = 0; r < N; r++) {
        const row = base + r * D;
        for (let i = 0; i < D; i++) {
          const xi = x[row + i];
          if (xi === 0) continue;
          for (let j = 0; j <= i; j++) G[i * K + j] += xi * x[row + j];
        }
      }
      for (let i = 0; i < D; i++) for (let j = 0; j < i; j++) G[j * K + i] = G[i * K + j];
    }

    // entropy of the normalized singular values
    const sigma = symmetricEigenvalues(G, K).map((v) => Math.sqrt(Math.max(v, 0)));
    let total = 0;
    for (const s of sigma) total += s;
    if (total === 0) continue;
    let entropy = 0;
    for (const s of sigma) {
      const p = s / total;
      if (p > 0) entropy -= p * Math.log(p);
    }
    sum += Math.exp(entropy);
  }
  return sum / B;
}

/**
 * Eigenvalues of a symmetric `[K, K]` matrix by cyclic Jacobi rotations, in no particular
 * order. `A` (row-major, float64) is overwritten. Sweeps until the off-diagonal mass is below
 * 1e-30 of the total (about 1e-15 in norm), at most 100 sweeps.
 *
 * @example
 * symmetricEigenvalues(new Float64Array([2, 1, 1, 2]), 2); // [1, 3] in some order
 */
export function symmetricEigenvalues(A: Float64Array, K: number): Float64Array {
  let frob = 0;
  for (let i = 0; i < K * K; i++) frob += A[i] * A[i];
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < K; p++) for (let q = p + 1; q < K; q++) off += 2 * A[p * K + q] ** 2;
    if (off <= 1e-30 * frob) break;

    for (let p = 0; p < K - 1; p++) {
      for (let q = p + 1; q < K; q++) {
        const apq = A[p * K + q];
        if (apq === 0) continue;

        // rotation that zeroes A[p][q]: t = tan(angle), the smaller root
        const theta = (A[q * K + q] - A[p * K + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;

        // A <- J^T A J: columns p and q, then rows p and q
        for (let k = 0; k < K; k++) {
          const akp = A[k * K + p];
          const akq = A[k * K + q];
          A[k * K + p] = c * akp - s * akq;
          A[k * K + q] = s * akp + c * akq;
        }
        for (let k = 0; k < K; k++) {
          const apk = A[p * K + k];
          const aqk = A[q * K + k];
          A[p * K + k] = c * apk - s * aqk;
          A[q * K + k] = s * apk + c * aqk;
        }
      }
    }
  }
  const eig = new Float64Array(K);
  for (let i = 0; i < K; i++) eig[i] = A[i * K + i];
  return eig;
}
