/**
 * The residual combine fused with LayerNorm, forward and backward, per row of D channels:
 *
 *   z = c * V - s * xneg            c = 1 + s with identity, else 1 (per channel)
 *   y = (z - mean) * rstd * weight + bias,   rstd = 1 / sqrt(var(z) + lnEps)
 *
 * `s` and `c` arrive expanded to D channels. Mean and variance are two-pass sums in float64.
 */

/** LayerNorm settings of a call; null when the layer has no LayerNorm. */
export interface LayerNormPlan {
  weight: Float32Array | null;
  bias: Float32Array | null;
  eps: number;
}

/** Forward for rows `[0, L)`, saving `mean` and `rstd` when LayerNorm is on. */
export function combineForward(
  L: number,
  D: number,
  V: Float32Array,
  vOff: number,
  xneg: Float32Array,
  xnegOff: number,
  s: Float64Array,
  c: Float64Array,
  ln: LayerNormPlan | null,
  y: Float32Array,
  yOff: number,
  mean: Float64Array,
  rstd: Float64Array,
  statOff: number,
  z: Float64Array,
): void {
  for (let i = 0; i < L; i++) {
    const vi = vOff + i * D;
    const ni = xnegOff + i * D;
    const yi = yOff + i * D;

    // combine
    for (let j = 0; j < D; j++) z[j] = c[j] * V[vi + j] - s[j] * xneg[ni + j];
    if (ln === null) {
      for (let j = 0; j < D; j++) y[yi + j] = z[j];
      continue;
    }

    // mean, rstd
    let sum = 0;
    for (let j = 0; j < D; j++) sum += z[j];
    const mu = sum / D;
    let sq = 0;
    for (let j = 0; j < D; j++) sq += (z[j] - mu) * (z[j] - mu);
    const r = 1 / Math.sqrt(sq / D + ln.eps);
    mean[statOff + i] = mu;
    rstd[statOff + i] = r;

    // normalize
    const w = ln.weight;
    const b = ln.bias;
    for (let j = 0; j < D; j++) {
      let v = (z[j] - mu) * r;
      if (w !== null) v *= w[j];
      if (b !== null) v += b[j];
      y[yi + j] = v;
    }
  }
}

/** Channel sums a backward call accumulates over every row of every item, in float64. */
export interface ChannelGrads {
  /** d loss / d s per channel. */
  ds: Float64Array;
  dWeight: Float64Array | null;
  dBias: Float64Array | null;
}

/**
 * Backward for rows `[0, L)`: from dy to `dV = c * dz` and `dxneg = -s * dz`, adding the
 * channel sums for s, weight and bias into `sums`. `g` is float64 scratch of length >= D.
 *
 *   dz = rstd * (g - mean(g) - zhat * mean(g * zhat)),  g = dy * weight,  zhat = (z - mean) rstd
 *   ds += ((identity ? V : 0) - xneg) * dz
 */
export function combineBackward(
  L: number,
  D: number,
  V: Float32Array,
  vOff: number,
  xneg: Float32Array,
  xnegOff: number,
  s: Float64Array,
  c: Float64Array,
  identity: boolean,
  ln: LayerNormPlan | null,
  mean: Float64Array,
  rstd: Float64Array,
  statOff: number,
  dy: Float32Array,
  dyOff: number,
  dV: Float32Array,
  dxneg: Float32Array,
  sums: ChannelGrads,
  g: Float64Array,
): void {
  const { ds, dWeight, dBias } = sums;
  for (let i = 0; i < L; i++) {
    const vi = vOff + i * D;
    const ni = xnegOff + i * D;
    const di = dyOff + i * D;
    const o = i * D;

    // layer norm
    if (ln === null) {
      for (let j = 0; j < D; j++) g[j] = dy[di + j];
    } else {
      const mu = mean[statOff + i];
      const r = rstd[statOff + i];
      const w = ln.weight;
      let sumG = 0;
      let sumGz = 0;
      for (let j = 0; j < D; j++) {
        const zhat = (c[j] * V[vi + j] - s[j] * xneg[ni + j] - mu) * r;
        const gj = w === null ? dy[di + j] : dy[di + j] * w[j];
        if (dWeight !== null) dWeight[j] += dy[di + j] * zhat;
        if (dBias !== null) dBias[j] += dy[di + j];
        sumG += gj;
        sumGz += gj * zhat;
      }
      const mg = sumG / D;
      const mgz = sumGz / D;
      for (let j = 0; j < D; j++) {
        const zhat = (c[j] * V[vi + j] - s[j] * xneg[ni + j] - mu) * r;
        const gj = w === null ? dy[di + j] : dy[di + j] * w[j];
        g[j] = r * (gj - mg - zhat * mgz);
      }
    }

    // combine
    for (let j = 0; j < D; j++) {
      const dz = g[j];
      ds[j] += ((identity ? V[vi + j] : 0) - xneg[ni + j]) * dz;
      dV[o + j] = c[j] * dz;
      dxneg[o + j] = -s[j] * dz;
    }
  }
}
