/**
 * The CUDA backend: the native module (see native.ts) wrapped as a `BackendImpl`, and what
 * `backendInfo()` reports about it. Every call checks its arguments in TypeScript first; the
 * module checks them again, runs the stages on the GPU and returns when the results are in place.
 */
import type { BackendImpl, SavedState } from './plan.ts';
import { ContraNormError } from './errors.ts';
import type { ErrorCode } from './errors.ts';
import { loadNative } from './native.ts';
import type { NativeAddon, NativeGrads, NativeSaved, NativeTensor } from './native.ts';
import type { BackendInfo, ContraNormGrads } from './types.ts';
import type { Plan } from './plan.ts';

/** Whether CUDA can run, the backend when it can, and what `backendInfo()` says. */
export interface CudaProbe {
  impl: BackendImpl | null;
  info: BackendInfo;
  /**
   * A device answered although CUDA cannot run (cuBLAS missing, compute capability too low):
   * running on the CPU path then deserves a warning.
   */
  gpuPresent: boolean;
}

/** What a CUDA forward keeps for its backward: the module's saved context in device memory. */
export class CudaState implements SavedState {
  constructor(readonly native: NativeSaved) {}

  release(): void {
    this.native.release();
  }
}

/** The module's operations on host or device tensors, with its errors as `ContraNormError`. */
export interface CudaOps {
  forward(x: NativeTensor, plan: Plan, y: NativeTensor): CudaState | null;
  forwardAsync(x: NativeTensor, plan: Plan, y: NativeTensor): Promise<CudaState | null>;
  backward(dy: NativeTensor, state: SavedState, dx: NativeTensor): NativeGrads;
  backwardAsync(dy: NativeTensor, state: SavedState, dx: NativeTensor): Promise<NativeGrads>;
}

const NATIVE_CODES = new Set<string>([
  'ERR_CONTRANORM_CUDA',
  'ERR_CONTRANORM_CUBLAS',
  'ERR_CONTRANORM_OUT_OF_MEMORY',
  'ERR_CONTRANORM_BACKEND_UNAVAILABLE',
  'ERR_CONTRANORM_DISPOSED',
  'ERR_CONTRANORM_NATIVE',
]);

/**
 * A failure of the module as a `ContraNormError` with the same `code` (and `bytes` for out of
 * memory), the original as its `cause`. Argument errors (TypeError, RangeError) pass unchanged.
 */
export function nativeError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof ContraNormError) return err;
  if (err instanceof TypeError || err instanceof RangeError) return err;
  const { code, bytes } = err as { code?: unknown; bytes?: unknown };
  if (typeof code !== 'string' || !NATIVE_CODES.has(code)) return err;
  const wrapped = new ContraNormError(code as ErrorCode, err.message, { cause: err });
  if (typeof bytes === 'number') Object.assign(wrapped, { bytes });
  return wrapped;
}

function native<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    throw nativeError(err);
  }
}

async function nativeAsync<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw nativeError(err);
  }
}

function stateOf(saved: NativeSaved | null): CudaState | null {
  return saved === null ? null : new CudaState(saved);
}

function nativeOf(state: SavedState): NativeSaved {
  return (state as CudaState).native;
}

function opsOf(addon: NativeAddon): CudaOps {
  return {
    forward: (x, plan, y) => stateOf(native(() => addon.forward(x, plan, y))),
    forwardAsync: async (x, plan, y) =>
      stateOf(await nativeAsync(() => addon.forwardAsync(x, plan, y))),
    backward: (dy, state, dx) => native(() => addon.backward(dy, nativeOf(state), dx)),
    backwardAsync: (dy, state, dx) =>
      nativeAsync(() => addon.backwardAsync(dy, nativeOf(state), dx)),
  };
}

function gradsOf(g: NativeGrads, dx: Float32Array): ContraNormGrads {
  const grads: ContraNormGrads = { dx, dScale: g.dScale };
  if (g.dWeight !== undefined) grads.dWeight = g.dWeight;
  if (g.dBias !== undefined) grads.dBias = g.dBias;
  return grads;
}

/** The backend on Float32Arrays: y and dx are written into `out` or a new array. */
function backendOf(ops: CudaOps): BackendImpl {
  const size = (plan: Plan) => plan.B * plan.N * plan.D;
  return {
    name: 'cuda',
    forward(x, plan, out) {
      const y = out ?? new Float32Array(size(plan));
      return { y, state: ops.forward(x, plan, y) };
    },
    backward(dy, plan, state, out) {
      const dx = out ?? new Float32Array(size(plan));
      return gradsOf(ops.backward(dy, state, dx), dx);
    },
    async forwardAsync(x, plan, out) {
      const y = out ?? new Float32Array(size(plan));
      return { y, state: await ops.forwardAsync(x, plan, y) };
    },
    async backwardAsync(dy, plan, state, out) {
      const dx = out ?? new Float32Array(size(plan));
      return gradsOf(await ops.backwardAsync(dy, state, dx), dx);
    },
  };
}

/** Where CUDA runs: the backend, the raw operations and the module. */
export interface Cuda {
  impl: BackendImpl;
  ops: CudaOps;
  addon: NativeAddon;
}

let probed: { probe: CudaProbe; cuda: Cuda | null } | null = null;

function probeOnce(): { probe: CudaProbe; cuda: Cuda | null } {
  if (probed !== null) return probed;
  const load = loadNative();
  if (load.addon === null) {
    const info: BackendInfo = { backend: 'cpu', reason: `no native CUDA module: ${load.error}` };
    probed = { probe: { impl: null, info, gpuPresent: false }, cuda: null };
    return probed;
  }
  const p = load.addon.probe();
  if (!p.ok) {
    const info: BackendInfo = { backend: 'cpu', reason: p.reason ?? 'CUDA cannot run' };
    probed = { probe: { impl: null, info, gpuPresent: p.device !== null }, cuda: null };
    return probed;
  }
  const ops = opsOf(load.addon);
  const impl = backendOf(ops);
  const info: BackendInfo = { backend: 'cuda', memory: p.memory };
  if (p.device !== null) info.device = p.device;
  if (p.computeCapability !== null) info.computeCapability = p.computeCapability;
  if (p.cublas !== null) info.cublas = p.cublas;
  probed = { probe: { impl, info, gpuPresent: true }, cuda: { impl, ops, addon: load.addon } };
  return probed;
}

/** Loads the native module once and reports whether CUDA can run, and why not. */
export function probeCuda(): CudaProbe {
  return probeOnce().probe;
}

/** The CUDA backend, or a `ContraNormError` (`ERR_CONTRANORM_BACKEND_UNAVAILABLE`) naming why not. */
export function requireCuda(): Cuda {
  const { probe, cuda } = probeOnce();
  if (cuda === null) {
    throw new ContraNormError(
      'ERR_CONTRANORM_BACKEND_UNAVAILABLE',
      `CUDA cannot run: ${probe.info.reason}`,
    );
  }
  return cuda;
}
