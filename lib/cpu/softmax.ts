/**
 * Masked softmax of the similarity matrix S (`[R, C]`, already divided by tau), forward and
 * backward, over rows (`P_i = softmax_j S_ij`) or over columns (`P_.j = softmax_i S_ij`).
 * Excluded entries (mask non-zero) get probability 0; a row (column) with every entry excluded
 * is all zeros, never NaN. The maximum is subtracted before exp, so no tau overflows.
 */

/**
 * Row softmax of S into P; `mask` (or null) is read at `mOff + i * ldm + j`. S is overwritten
 * with the exponentials, so a column softmax of the same S must run first.
 */
export function softmaxRowsForward(
  R: number,
  C: number,
  S: Float64Array,
  ldS: number,
  mask: Uint8Array | null,
  mOff: number,
  ldm: number,
  P: Float32Array,
  pOff: number,
  ldp: number,
): void {
  for (let i = 0; i < R; i++) {
    const si = i * ldS;
    const pi = pOff + i * ldp;
    const mi = mOff + i * ldm;

    // max
    let max = -Infinity;
    for (let j = 0; j < C; j++) {
      if (mask !== null && mask[mi + j] !== 0) continue;
      if (S[si + j] > max) max = S[si + j];
    }
    if (max === -Infinity) {
      P.fill(0, pi, pi + C);
      continue;
    }

    // exp and sum
    let sum = 0;
    for (let j = 0; j < C; j++) {
      const e = mask !== null && mask[mi + j] !== 0 ? 0 : Math.exp(S[si + j] - max);
      S[si + j] = e;
      sum += e;
    }

    // scale
    const inv = 1 / sum;
    for (let j = 0; j < C; j++) P[pi + j] = S[si + j] * inv;
  }
}

/**
 * Column softmax of S into P, walking rows so every read is contiguous; `colMax` and `colSum`
 * are scratch of length >= C. S is left unchanged.
 */
export function softmaxColsForward(
  R: number,
  C: number,
  S: Float64Array,
  ldS: number,
  mask: Uint8Array | null,
  mOff: number,
  ldm: number,
  P: Float32Array,
  pOff: number,
  ldp: number,
  colMax: Float64Array,
  colSum: Float64Array,
): void {
  // max
  colMax.fill(-Infinity, 0, C);
  for (let i = 0; i < R; i++) {
    const si = i * ldS;
    const mi = mOff + i * ldm;
    for (let j = 0; j < C; j++) {
      if (mask !== null && mask[mi + j] !== 0) continue;
      if (S[si + j] > colMax[j]) colMax[j] = S[si + j];
    }
  }

  // sum
  colSum.fill(0, 0, C);
  for (let i = 0; i < R; i++) {
    const si = i * ldS;
    const mi = mOff + i * ldm;
    for (let j = 0; j < C; j++) {
      if (mask !== null && mask[mi + j] !== 0) continue;
      colSum[j] += Math.exp(S[si + j] - colMax[j]);
    }
  }
  for (let j = 0; j < C; j++) colSum[j] = colSum[j] > 0 ? 1 / colSum[j] : 0;

  // store
  for (let i = 0; i < R; i++) {
    const si = i * ldS;
    const mi = mOff + i * ldm;
    const pi = pOff + i * ldp;
    for (let j = 0; j < C; j++) {
      const excluded = mask !== null && mask[mi + j] !== 0;
      P[pi + j] = excluded ? 0 : Math.exp(S[si + j] - colMax[j]) * colSum[j];
    }
  }
}

/**
 * Softmax backward, in place over dP: `dS = Pr * (dP - rowsum(dP * Pr)) * invTau`, plus
 * `Pc * (dP - colsum(dP * Pc)) * invTau` when the column part Pc is given. `colDot` is scratch of
 * length >= C.
 */
export function softmaxBackward(
  R: number,
  C: number,
  Pr: Float32Array,
  Pc: Float32Array | null,
  pOff: number,
  ldp: number,
  dP: Float64Array,
  ldd: number,
  invTau: number,
  colDot: Float64Array | null,
): void {
  // column dots, before dP is overwritten
  if (Pc !== null && colDot !== null) {
    colDot.fill(0, 0, C);
    for (let i = 0; i < R; i++) {
      const pi = pOff + i * ldp;
      const di = i * ldd;
      for (let j = 0; j < C; j++) colDot[j] += dP[di + j] * Pc[pi + j];
    }
  }

  for (let i = 0; i < R; i++) {
    const pi = pOff + i * ldp;
    const di = i * ldd;

    // row dot
    let rowDot = 0;
    for (let j = 0; j < C; j++) rowDot += dP[di + j] * Pr[pi + j];

    // store
    if (Pc === null) {
      for (let j = 0; j < C; j++) dP[di + j] = Pr[pi + j] * (dP[di + j] - rowDot) * invTau;
    } else {
      for (let j = 0; j < C; j++) {
        const g = dP[di + j];
        dP[di + j] = (Pr[pi + j] * (g - rowDot) + Pc[pi + j] * (g - colDot![j])) * invTau;
      }
    }
  }
}
