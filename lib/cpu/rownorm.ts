/**
 * Row normalize, forward and backward: `xn_i = x_i / r_i` with `r_i = max(||x_i||, eps)`.
 * The forward keeps `invNorm_i = 1 / r_i`; a row whose norm is at or under eps is scaled by the
 * constant 1 / eps, so its gradient is `dxn_i / eps` with no projection.
 */

/** `xn_i = x_i * invNorm_i` for rows `[0, L)` of D channels. */
export function rownormForward(
  L: number,
  D: number,
  eps: number,
  x: Float32Array,
  xOff: number,
  xn: Float32Array,
  xnOff: number,
  invNorm: Float64Array,
  normOff: number,
): void {
  for (let i = 0; i < L; i++) {
    const row = xOff + i * D;
    const out = xnOff + i * D;

    // reduce
    let ss = 0;
    for (let j = 0; j < D; j++) ss += x[row + j] * x[row + j];

    // normalize
    const inv = 1 / Math.max(Math.sqrt(ss), eps);
    invNorm[normOff + i] = inv;
    for (let j = 0; j < D; j++) xn[out + j] = x[row + j] * inv;
  }
}

/**
 * `dx_i (+)= (dxn_i - xn_i (xn_i . dxn_i)) * invNorm_i`, or `dxn_i / eps` for clamped rows.
 * With `accumulate` the result is added to dx, otherwise it replaces it.
 */
export function rownormBackward(
  L: number,
  D: number,
  eps: number,
  xn: Float32Array,
  xnOff: number,
  invNorm: Float64Array,
  normOff: number,
  dxn: Float32Array,
  dx: Float32Array,
  dxOff: number,
  accumulate: boolean,
): void {
  const clamped = 1 / eps;
  for (let i = 0; i < L; i++) {
    const inv = invNorm[normOff + i];
    const row = xnOff + i * D;
    const g = i * D;
    const out = dxOff + i * D;

    // project out the radial part, unless the norm was clamped
    let dot = 0;
    if (inv < clamped) for (let j = 0; j < D; j++) dot += xn[row + j] * dxn[g + j];

    // store
    if (accumulate) {
      for (let j = 0; j < D; j++) dx[out + j] += (dxn[g + j] - xn[row + j] * dot) * inv;
    } else {
      for (let j = 0; j < D; j++) dx[out + j] = (dxn[g + j] - xn[row + j] * dot) * inv;
    }
  }
}
