/**
 * The CPU path: ContraNorm forward and backward in TypeScript, item by item, stage by stage
 * (rownorm.ts, softmax.ts, layernorm.ts, products in gemm.ts). Buffers are float32 where they
 * are saved or returned and float64 where sums are formed (S, dP, the channel sums).
 *
 * Tokens mode, per item with L valid rows:   S = xn xn^T / tau   [L, L],   xneg = P V
 * Features mode, per item:                   S = xn^T xn / tau   [D, D],   xneg = V P
 */
import { constants as bufferConstants } from 'node:buffer';

import type { BackendImpl, SavedState } from '../plan.ts';
import { ContraNormError, Phrase, rangeError } from '../errors.ts';
import type { ContraNormGrads } from '../types.ts';
import type { Plan } from '../plan.ts';
import { gemmNN, gemmNT, syrk, transpose } from './gemm.ts';
import { combineBackward, combineForward } from './layernorm.ts';
import type { ChannelGrads, LayerNormPlan } from './layernorm.ts';
import { rownormBackward, rownormForward } from './rownorm.ts';
import { softmaxBackward, softmaxColsForward, softmaxRowsForward } from './softmax.ts';

/** What the forward keeps for the backward; offsets per item are `b * N * D`, `b * M * M`. */
interface CpuState extends SavedState {
  /** A private copy of x (or xn itself with preNorm): the V of the forward. */
  V: Float32Array;
  xn: Float32Array;
  invNorm: Float64Array;
  /** Row softmax part of P, `[B, M, M]`. */
  probs: Float32Array;
  /** Column softmax part of P with dualNorm, else null. */
  probsCol: Float32Array | null;
  xneg: Float32Array;
  mean: Float64Array;
  rstd: Float64Array;
}

/**
 * The largest typed array this Node.js makes (`buffer.constants.MAX_LENGTH` bytes); a call that
 * needs a larger one fails up front with a named error instead of a bare allocation failure.
 */
const MAX_BYTES = bufferConstants.MAX_LENGTH;

type FloatArray = Float32Array | Float64Array;

/** Allocates a typed array of `n` elements for `what`, turning a failure into a named error. */
function alloc<T extends FloatArray>(
  Type: { new (n: number): T; BYTES_PER_ELEMENT: number },
  n: number,
  what: string,
  plan: Plan,
): T {
  const bytes = n * Type.BYTES_PER_ELEMENT;
  const shape = `[${plan.B}, ${plan.N}, ${plan.D}] in ${plan.mode} mode`;
  if (bytes > MAX_BYTES) {
    throw rangeError(
      'shape',
      `at most ${MAX_BYTES} bytes for ${what} on the CPU path (one typed array)`,
      new Phrase(`${shape}, which needs ${bytes} bytes`),
      'ERR_CONTRANORM_SHAPE',
    );
  }
  try {
    return new Type(n);
  } catch (err) {
    throw new ContraNormError(
      'ERR_CONTRANORM_OUT_OF_MEMORY',
      `the CPU path could not allocate ${bytes} bytes for ${what} of ${shape}`,
      { cause: err },
    );
  }
}

/** `s` and `c` (the factor of V) expanded to D channels. */
function expandScale(plan: Plan): { s: Float64Array; c: Float64Array } {
  const { D, scale, identity } = plan;
  const s = new Float64Array(D);
  const c = new Float64Array(D);
  for (let j = 0; j < D; j++) {
    s[j] = scale.length === 1 ? scale[0] : scale[j];
    c[j] = identity ? 1 + s[j] : 1;
  }
  return { s, c };
}

function layerNormOf(plan: Plan): LayerNormPlan | null {
  return plan.layerNorm ? { weight: plan.weight, bias: plan.bias, eps: plan.lnEps } : null;
}

/** `P = Pr + Pc` (`[R, C]` at pOff, leading dimension ldp) into a contiguous `out`. */
function addProbs(
  R: number,
  C: number,
  Pr: Float32Array,
  Pc: Float32Array,
  pOff: number,
  ldp: number,
  out: Float32Array,
) {
  for (let i = 0; i < R; i++) {
    const pi = pOff + i * ldp;
    for (let j = 0; j < C; j++) out[i * C + j] = Pr[pi + j] + Pc[pi + j];
  }
}

/** `A = A + A^T` in place for a square `[n, n]` contiguous matrix. */
function symmetrize(n: number, A: Float64Array): void {
  for (let i = 0; i < n; i++) {
    A[i * n + i] *= 2;
    for (let j = i + 1; j < n; j++) {
      const v = A[i * n + j] + A[j * n + i];
      A[i * n + j] = v;
      A[j * n + i] = v;
    }
  }
}

/** The gradients of an empty call: all zero, of the lengths a full call would give. */
function emptyGrads(plan: Plan, dx: Float32Array): ContraNormGrads {
  const grads: ContraNormGrads = { dx, dScale: new Float32Array(plan.scale.length) };
  if (plan.weight !== null) grads.dWeight = new Float32Array(plan.D);
  if (plan.bias !== null) grads.dBias = new Float32Array(plan.D);
  return grads;
}

function forward(
  x: Float32Array,
  plan: Plan,
  out: Float32Array | null,
): { y: Float32Array; state: CpuState | null } {
  const { B, N, D, M, mode, lengths, mask, maskBatched, dualNorm, preNorm } = plan;
  const y = out ?? alloc(Float32Array, B * N * D, 'y', plan);
  const save = plan.saveForBackward;

  // nothing to compute: the saved context of an empty call only answers its backward
  if (B * N * D === 0) {
    if (!save) return { y, state: null };
    const none = new Float32Array(0);
    const empty = new Float64Array(0);
    const state: CpuState = {
      V: none,
      xn: none,
      invNorm: empty,
      probs: none,
      probsCol: null,
      xneg: none,
      mean: empty,
      rstd: empty,
      release() {},
    };
    return { y, state };
  }
  const tokens = mode === 'tokens';
  const invTau = 1 / plan.temperature;
  const { s, c } = expandScale(plan);
  const ln = layerNormOf(plan);

  // saved buffers (or one item's worth of scratch when nothing is saved)
  const items = save ? B : 1;
  const xn = alloc(Float32Array, items * N * D, 'xn', plan);
  const invNorm = alloc(Float64Array, items * N, 'the row norms', plan);
  const probs = alloc(Float32Array, items * M * M, 'the probabilities P', plan);
  const probsCol = dualNorm ? alloc(Float32Array, items * M * M, 'the column softmax', plan) : null;
  const xneg = alloc(Float32Array, items * N * D, 'xneg', plan);
  const mean = alloc(Float64Array, items * N, 'the LayerNorm means', plan);
  const rstd = alloc(Float64Array, items * N, 'the LayerNorm rstd', plan);
  const V = preNorm ? xn : save ? x.slice() : x;

  // scratch
  const S = alloc(Float64Array, M * M, 'the similarity S', plan);
  const mixed = dualNorm ? alloc(Float32Array, M * M, 'P', plan) : null;
  const xnT = tokens ? null : alloc(Float32Array, D * N, 'xn transposed', plan);
  const acc = new Float64Array(Math.max(N, D));
  const z = new Float64Array(D);
  const colMax = dualNorm ? new Float64Array(M) : null;
  const colSum = dualNorm ? new Float64Array(M) : null;

  for (let b = 0; b < B; b++) {
    const L = lengths === null ? N : lengths[b];
    const xo = b * N * D;
    const so = save ? xo : 0;
    const no = save ? b * N : 0;
    const po = save ? b * M * M : 0;
    const vo = preNorm ? so : xo;
    const R = tokens ? L : D;
    const mo = maskBatched ? b * M * M : 0;

    // normalize
    rownormForward(L, D, plan.eps, x, xo, xn, so, invNorm, no);

    // similarity
    if (tokens) {
      syrk(L, D, invTau, xn, so, D, S, 0, L);
    } else {
      transpose(L, D, xn, so, D, xnT!);
      syrk(D, L, invTau, xnT!, 0, L, S, 0, D);
    }

    // probabilities (the column part first: the row softmax overwrites S)
    if (dualNorm) softmaxColsForward(R, R, S, R, mask, mo, M, probsCol!, po, M, colMax!, colSum!);
    softmaxRowsForward(R, R, S, R, mask, mo, M, probs, po, M);
    let P: Float32Array = probs;
    let pOff = po;
    let ldp = M;
    if (dualNorm) {
      addProbs(R, R, probs, probsCol!, po, M, mixed!);
      P = mixed!;
      pOff = 0;
      ldp = R;
    }

    // mix
    if (tokens) gemmNN(L, D, L, P, pOff, ldp, V, vo, D, xneg, so, D, false, acc);
    else gemmNN(L, D, D, V, vo, D, P, pOff, ldp, xneg, so, D, false, acc);

    // combine and layer norm
    combineForward(L, D, V, vo, xneg, so, s, c, ln, y, xo, mean, rstd, no, z);
    y.fill(0, xo + L * D, xo + N * D);
  }

  if (!save) return { y, state: null };
  const state: CpuState = { V, xn, invNorm, probs, probsCol, xneg, mean, rstd, release() {} };
  return { y, state };
}

function backward(
  dy: Float32Array,
  plan: Plan,
  saved: SavedState,
  out: Float32Array | null,
): ContraNormGrads {
  const { B, N, D, M, mode, lengths, dualNorm, preNorm, identity, scale } = plan;
  const { V, xn, invNorm, probs, probsCol, xneg, mean, rstd } = saved as CpuState;
  const dx = out ?? alloc(Float32Array, B * N * D, 'dx', plan);
  if (B * N * D === 0) return emptyGrads(plan, dx);
  const tokens = mode === 'tokens';
  const invTau = 1 / plan.temperature;
  const { s, c } = expandScale(plan);
  const ln = layerNormOf(plan);
  const sums: ChannelGrads = {
    ds: new Float64Array(D),
    dWeight: plan.weight !== null ? new Float64Array(D) : null,
    dBias: plan.bias !== null ? new Float64Array(D) : null,
  };

  // scratch
  const dV = alloc(Float32Array, N * D, 'dV', plan);
  const dxneg = alloc(Float32Array, N * D, 'dxneg', plan);
  const dxn = alloc(Float32Array, N * D, 'dxn', plan);
  const dP = alloc(Float64Array, M * M, 'dP', plan);
  const PT = alloc(Float32Array, M * M, 'P transposed', plan);
  const VT = tokens ? null : alloc(Float32Array, N * D, 'V transposed', plan);
  const dxnegT = tokens ? null : alloc(Float32Array, N * D, 'dxneg transposed', plan);
  const acc = new Float64Array(Math.max(N, D));
  const g = new Float64Array(D);
  const colDot = dualNorm ? new Float64Array(M) : null;

  for (let b = 0; b < B; b++) {
    const L = lengths === null ? N : lengths[b];
    const xo = b * N * D;
    const no = b * N;
    const po = b * M * M;
    const R = tokens ? L : D;

    // layer norm and combine: dV = c dz, dxneg = -s dz
    combineBackward(
      L,
      D,
      V,
      xo,
      xneg,
      xo,
      s,
      c,
      identity,
      ln,
      mean,
      rstd,
      no,
      dy,
      xo,
      dV,
      dxneg,
      sums,
      g,
    );

    if (tokens) {
      // dV += P^T dxneg
      for (let i = 0; i < L; i++) {
        const pi = po + i * M;
        if (probsCol === null) for (let j = 0; j < L; j++) PT[j * L + i] = probs[pi + j];
        else for (let j = 0; j < L; j++) PT[j * L + i] = probs[pi + j] + probsCol[pi + j];
      }
      gemmNN(L, D, L, PT, 0, L, dxneg, 0, D, dV, 0, D, true, acc);

      // dP = dxneg V^T, dS in place, G = dS + dS^T, dxn = G xn
      gemmNT(L, L, D, 1, dxneg, 0, D, V, xo, D, dP, 0, L, false);
      softmaxBackward(L, L, probs, probsCol, po, M, dP, L, invTau, colDot);
      symmetrize(L, dP);
      gemmNN(L, D, L, dP, 0, L, xn, xo, D, dxn, 0, D, false, acc);
    } else {
      // dV += dxneg P^T
      let P: Float32Array = probs;
      let pOff = po;
      if (probsCol !== null) {
        addProbs(D, D, probs, probsCol, po, M, PT);
        P = PT;
        pOff = 0;
      }
      gemmNT(L, D, D, 1, dxneg, 0, D, P, pOff, D, dV, 0, D, true);

      // dP = V^T dxneg, dS in place, G = dS + dS^T, dxn = xn G
      transpose(L, D, V, xo, D, VT!);
      transpose(L, D, dxneg, 0, D, dxnegT!);
      gemmNT(D, D, L, 1, VT!, 0, L, dxnegT!, 0, L, dP, 0, D, false);
      softmaxBackward(R, R, probs, probsCol, po, M, dP, D, invTau, colDot);
      symmetrize(D, dP);
      gemmNN(L, D, D, xn, xo, D, dP, 0, D, dxn, 0, D, false, acc);
    }

    // normalize: V's gradient joins before (preNorm) or after the row normalization
    if (preNorm) {
      for (let k = 0; k < L * D; k++) dxn[k] += dV[k];
      rownormBackward(L, D, plan.eps, xn, xo, invNorm, no, dxn, dx, xo, false);
    } else {
      rownormBackward(L, D, plan.eps, xn, xo, invNorm, no, dxn, dx, xo, false);
      for (let k = 0; k < L * D; k++) dx[xo + k] += dV[k];
    }
    dx.fill(0, xo + L * D, xo + N * D);
  }

  // channel sums
  const dScale = new Float32Array(scale.length);
  if (scale.length === 1) {
    let total = 0;
    for (let j = 0; j < D; j++) total += sums.ds[j];
    dScale[0] = plan.scaleParam === 'exp' ? total * scale[0] : total;
  } else {
    for (let j = 0; j < D; j++)
      dScale[j] = plan.scaleParam === 'exp' ? sums.ds[j] * scale[j] : sums.ds[j];
  }
  const grads: ContraNormGrads = { dx, dScale };
  if (sums.dWeight !== null) grads.dWeight = Float32Array.from(sums.dWeight);
  if (sums.dBias !== null) grads.dBias = Float32Array.from(sums.dBias);
  return grads;
}

/**
 * The CPU backend. Its Promise forms compute on the calling thread before they return, so the
 * caller's buffers are read while they are known to be intact; the Promise settles after.
 */
export const cpuBackend: BackendImpl = {
  name: 'cpu',
  forward,
  backward,
  async forwardAsync(x, plan, out) {
    return forward(x, plan, out);
  },
  async backwardAsync(dy, plan, state, out) {
    return backward(dy, plan, state, out);
  },
};
