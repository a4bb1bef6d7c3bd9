/**
 * What the CUDA suites share: whether CUDA runs here (and the reason printed when it does not),
 * the option to force the CUDA backend, and the tolerances of the CUDA path.
 */
import { backendInfo } from '../lib/index.ts';
import { mismatches } from './helpers.ts';
import type { Tolerance } from './helpers.ts';

const info = backendInfo();

/** True where CUDA runs: a driver, a device and cuBLAS answered. */
export const gpu = info.backend === 'cuda';

/** For suite names: the device, or why the suite is skipped. */
export const where = gpu
  ? `${info.device}, compute capability ${info.computeCapability}`
  : `skipped: ${info.reason}`;

if (!gpu) console.log(`CUDA tests skipped: ${info.reason}`);

/** `options` with `backend: 'cuda'`. */
export function cuda<T extends object>(options?: T): T & { backend: 'cuda' } {
  return { ...(options ?? ({} as T)), backend: 'cuda' };
}

/**
 * The CUDA forward against float64 results (the reference, or the TypeScript path, which sums
 * in float64): cuBLAS forms S and P V with float32 sums, so the bound is a few times that of the
 * TypeScript path (FORWARD_TOL).
 */
export const CUDA_FORWARD_TOL: Tolerance = { abs: 2e-5, rel: 2e-4 };

/** The CUDA gradients against the TypeScript path or central differences; see GRAD_TOL. */
export const CUDA_GRAD_TOL: Tolerance = { abs: 5e-6, rel: 2e-4, relMax: 2e-5 };

/**
 * Long rows: products over thousands of terms in float32, so a part of the bound grows with the
 * largest value of the result (relMax).
 */
export const CUDA_LONG_TOL: Tolerance = { abs: 5e-5, rel: 5e-4, relMax: 5e-5 };

/** Lines naming where `got` leaves `tol` around `want`. */
export function closeFailures(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
  label: string,
): string[] {
  const bad = mismatches(got, want, tol);
  if (bad.length === 0) return [];
  const m = bad[0];
  return [
    `${label}: [${m.index}] got ${m.got} want ${m.want} (${bad.length} of ${want.length} bad)`,
  ];
}
