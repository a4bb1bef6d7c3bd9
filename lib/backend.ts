/**
 * Backend choice. The CPU path always runs; CUDA runs where the native module loads, a driver
 * and a device answer, and cuBLAS opens. `auto` takes CUDA when it can and says why when not.
 */
import { debuglog } from 'node:util';

import { cpuBackend } from './cpu/index.ts';
import { probeCuda } from './cuda.ts';
import { ContraNormError } from './errors.ts';
import type { BackendImpl } from './plan.ts';
import type { BackendInfo, BackendName } from './types.ts';

export const log = debuglog('contranorm');

let loggedFallback = false;

/** The implementation for a call: `cpu`, `cuda` (or an error saying why not), or `auto`. */
export function selectBackend(name: BackendName): BackendImpl {
  if (name === 'cpu') return cpuBackend;
  const cuda = probeCuda();
  if (cuda.impl !== null) return cuda.impl;
  if (name === 'cuda') {
    throw new ContraNormError(
      'ERR_CONTRANORM_BACKEND_UNAVAILABLE',
      `backend 'cuda' cannot run: ${cuda.info.reason}`,
    );
  }
  if (!loggedFallback) {
    loggedFallback = true;
    log('auto backend runs on the CPU path: %s', cuda.info.reason);
    // a GPU that answered but cannot run is worth the one warning the library prints
    if (cuda.gpuPresent) {
      process.emitWarning(`contranorm runs on the CPU path: ${cuda.info.reason}`, {
        code: 'CONTRANORM_CPU_FALLBACK',
      });
    }
  }
  return cpuBackend;
}

/** Which backend `auto` runs, with the device it found or the reason it runs on the CPU. */
export function backendInfo(): BackendInfo {
  const cuda = probeCuda();
  return { ...cuda.info };
}
