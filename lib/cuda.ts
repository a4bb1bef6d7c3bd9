/**
 * The CUDA backend: loads the native module and wraps it as a `BackendImpl`.
 */
import type { BackendImpl } from './backend.ts';
import type { BackendInfo } from './types.ts';

export interface CudaProbe {
  impl: BackendImpl | null;
  info: BackendInfo;
}

/** Loads the native module once and reports whether CUDA can run, and why not. */
export function probeCuda(): CudaProbe {
  return {
    impl: null,
    info: { backend: 'cpu', reason: 'the native CUDA module is not built in this version' },
  };
}
