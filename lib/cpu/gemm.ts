/**
 * Matrix products of the CPU path, on row-major buffers with explicit offsets and leading
 * dimensions (`ld*`: the distance between rows). JavaScript arithmetic is float64, so every sum
 * accumulates in float64 and rounds once when it is stored.
 *
 * Two loop orders, both reading rows contiguously:
 * - dot form (`syrk`, `gemmNT`): `C[i, j] = A_i . B_j`, four columns of C per pass over A_i;
 * - axpy form (`gemmNN`): `C_i += A[i, p] * B_p`, four rows of B per pass over a float64 row.
 */

type Buf = Float32Array | Float64Array;

/**
 * `C = alpha * A A^T` for A `[n, k]`: the lower triangle by dot products, mirrored above.
 * C must not overlap A.
 */
export function syrk(
  n: number,
  k: number,
  alpha: number,
  A: Float32Array,
  aOff: number,
  lda: number,
  C: Float64Array,
  cOff: number,
  ldc: number,
): void {
  // the lower triangle, row by row: C[i, 0..i] = alpha * A_i . A_j
  for (let i = 0; i < n; i++) {
    gemmNT(1, i + 1, k, alpha, A, aOff + i * lda, lda, A, aOff, lda, C, cOff + i * ldc, ldc, false);
  }

  // mirror
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) C[cOff + i * ldc + j] = C[cOff + j * ldc + i];
  }
}

/**
 * `C = alpha * A B^T (+ C when accumulate)` for A `[m, k]`, B `[n, k]`, C `[m, n]`.
 * C must not overlap A or B.
 */
export function gemmNT(
  m: number,
  n: number,
  k: number,
  alpha: number,
  A: Float32Array,
  aOff: number,
  lda: number,
  B: Float32Array,
  bOff: number,
  ldb: number,
  C: Buf,
  cOff: number,
  ldc: number,
  accumulate: boolean,
): void {
  for (let i = 0; i < m; i++) {
    const ai = aOff + i * lda;
    const ci = cOff + i * ldc;
    let j = 0;
    for (; j + 4 <= n; j += 4) {
      const b0 = bOff + j * ldb;
      const b1 = b0 + ldb;
      const b2 = b1 + ldb;
      const b3 = b2 + ldb;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let p = 0; p < k; p++) {
        const a = A[ai + p];
        s0 += a * B[b0 + p];
        s1 += a * B[b1 + p];
        s2 += a * B[b2 + p];
        s3 += a * B[b3 + p];
      }
      if (accumulate) {
        C[ci + j] += alpha * s0;
        C[ci + j + 1] += alpha * s1;
        C[ci + j + 2] += alpha * s2;
        C[ci + j + 3] += alpha * s3;
      } else {
        C[ci + j] = alpha * s0;
        C[ci + j + 1] = alpha * s1;
        C[ci + j + 2] = alpha * s2;
        C[ci + j + 3] = alpha * s3;
      }
    }
    for (; j < n; j++) {
      const bj = bOff + j * ldb;
      let s = 0;
      for (let p = 0; p < k; p++) s += A[ai + p] * B[bj + p];
      C[ci + j] = accumulate ? C[ci + j] + alpha * s : alpha * s;
    }
  }
}

/**
 * `C = A B (+ C when accumulate)` for A `[m, k]`, B `[k, n]`, C `[m, n]`, one float64 row of
 * C at a time in `acc` (length >= n). Zero entries of A (masked or padded probabilities) are
 * skipped. C must not overlap A or B.
 */
export function gemmNN(
  m: number,
  n: number,
  k: number,
  A: Buf,
  aOff: number,
  lda: number,
  B: Buf,
  bOff: number,
  ldb: number,
  C: Float32Array,
  cOff: number,
  ldc: number,
  accumulate: boolean,
  acc: Float64Array,
): void {
  for (let i = 0; i < m; i++) {
    const ai = aOff + i * lda;
    const ci = cOff + i * ldc;

    // load
    if (accumulate) for (let j = 0; j < n; j++) acc[j] = C[ci + j];
    else acc.fill(0, 0, n);

    // four rows of B at a time
    let p = 0;
    for (; p + 4 <= k; p += 4) {
      const a0 = A[ai + p];
      const a1 = A[ai + p + 1];
      const a2 = A[ai + p + 2];
      const a3 = A[ai + p + 3];
      if (a0 === 0 && a1 === 0 && a2 === 0 && a3 === 0) continue;
      const b0 = bOff + p * ldb;
      const b1 = b0 + ldb;
      const b2 = b1 + ldb;
      const b3 = b2 + ldb;
      for (let j = 0; j < n; j++) {
        acc[j] += a0 * B[b0 + j] + a1 * B[b1 + j] + a2 * B[b2 + j] + a3 * B[b3 + j];
      }
    }
    for (; p < k; p++) {
      const a = A[ai + p];
      if (a === 0) continue;
      const bp = bOff + p * ldb;
      for (let j = 0; j < n; j++) acc[j] += a * B[bp + j];
    }

    // store
    for (let j = 0; j < n; j++) C[ci + j] = acc[j];
  }
}

/** `T = A^T` for A `[m, n]` (leading dimension lda) into T `[n, m]` (contiguous). */
export function transpose(
  m: number,
  n: number,
  A: Buf,
  aOff: number,
  lda: number,
  T: Float32Array,
): void {
  for (let i = 0; i < m; i++) {
    const ai = aOff + i * lda;
    for (let j = 0; j < n; j++) T[j * m + i] = A[ai + j];
  }
}
