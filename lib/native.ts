/**
 * The native CUDA module: its whole surface as types, and its loading. The module is found with
 * node-gyp-build from the package root (build/Release, then prebuilds/), which is one folder above
 * both lib/ (sources) and dist/ (the published build). It loads on any Linux x64 machine, GPU or
 * not; `probe()` says whether CUDA can run.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';

import type { Plan } from './plan.ts';

const log = debuglog('contranorm');

/** What the module finds: a usable GPU, or the reason there is none. */
export interface NativeProbe {
  /** True when CUDA can run: driver, device and cuBLAS all answered. */
  ok: boolean;
  /** Why CUDA cannot run, naming what is missing; null when it can. */
  reason: string | null;
  /** What is missing: `driver`, `device`, `cublas` or `runtime`; null when CUDA can run. */
  missing: 'driver' | 'device' | 'cublas' | 'runtime' | null;
  /** Name of device 0, when one was found. */
  device: string | null;
  /** Compute capability of device 0 such as `'9.0'`, when one was found. */
  computeCapability: string | null;
  /** Memory of device 0 in bytes (0 when none was found). */
  memory: number;
  /** Path of the cuBLAS library opened, when one was. */
  cublas: string | null;
  /** CUDA versions as 1000 * major + 10 * minor; 0 when unknown. */
  driverVersion: number;
  runtimeVersion: number;
}

/** A float array in device memory (`DeviceTensor` wraps it). */
export interface NativeDeviceBuffer {
  readonly length: number;
  readonly disposed: boolean;
  /** Copies `src` (of exactly `length` floats) to the device. */
  upload(src: Float32Array): void;
  /** Copies the buffer into `dst` (of exactly `length` floats). */
  download(dst: Float32Array): void;
  /** Frees the device memory now; work in flight keeps it until it ends. */
  dispose(): void;
}

/** A forward call's saved context in device memory. */
export interface NativeSaved {
  /** Device bytes held. */
  readonly bytes: number;
  readonly released: boolean;
  /** Frees the device memory now; a backward in flight keeps it until it ends. */
  release(): void;
}

/** Parameter gradients of a backward call (dx is written in place). */
export interface NativeGrads {
  dScale: Float32Array;
  dWeight?: Float32Array;
  dBias?: Float32Array;
}

/** Where a tensor argument lives: host memory read or written in place, or device memory. */
export type NativeTensor = Float32Array | NativeDeviceBuffer;

/** Counters of the module's caching device allocator. */
export interface NativeMemoryStats {
  /** Bytes held from the device (cudaMalloc), in use or cached. */
  reservedBytes: number;
  /** Bytes in use. */
  allocatedBytes: number;
  /** The most `reservedBytes` was, since the start or `_benchResetPeak()`. */
  peakReservedBytes: number;
  /** The most `allocatedBytes` was, since the start or `_benchResetPeak()`. */
  peakAllocatedBytes: number;
  /** cudaMalloc and cudaFree calls so far. */
  mallocCalls: number;
  freeCalls: number;
}

/**
 * @internal One call timed by the benchmark hooks: CUDA events on the call's stream, in
 * milliseconds from the start of the first call of the same `_benchTake()`.
 */
export interface NativeCallTime {
  op: 'forward' | 'backward';
  /** When the call's first operation began and its last one ended. */
  startMs: number;
  endMs: number;
  /** Time inside its cuBLAS products, and how many there were (timing level 2; else 0). */
  productMs: number;
  products: number;
}

/** @internal What the benchmark needs to know of device 0. */
export interface NativeBenchDevice {
  l2Bytes: number;
  /** Streaming multiprocessors. */
  smCount: number;
  /** `cudaMemGetInfo`: free and total device memory. */
  freeBytes: number;
  totalBytes: number;
}

/**
 * The addon. Every function checks its arguments again (TypeError / RangeError with a `code`) and
 * turns CUDA and cuBLAS failures into errors with a stable `code` (`ERR_CONTRANORM_CUDA`,
 * `ERR_CONTRANORM_CUBLAS`, `ERR_CONTRANORM_OUT_OF_MEMORY` with `bytes`, ...).
 */
export interface NativeAddon {
  readonly version: string;
  /** Probes the driver, device 0 and cuBLAS on first use; the result is kept. */
  probe(): NativeProbe;
  /** The forward on the GPU: writes y, returns the saved context (null without saveForBackward). */
  forward(x: NativeTensor, plan: Plan, y: NativeTensor): NativeSaved | null;
  /** `forward` off the JavaScript thread. */
  forwardAsync(x: NativeTensor, plan: Plan, y: NativeTensor): Promise<NativeSaved | null>;
  /** The backward: writes dx, returns the parameter gradients. */
  backward(dy: NativeTensor, saved: NativeSaved, dx: NativeTensor): NativeGrads;
  /** `backward` off the JavaScript thread. */
  backwardAsync(dy: NativeTensor, saved: NativeSaved, dx: NativeTensor): Promise<NativeGrads>;
  memoryStats(): NativeMemoryStats;
  /** Returns every cached, unused block to the device. */
  emptyCache(): void;
  /** `new DeviceBuffer(length)`: uninitialized device memory; throws where CUDA cannot run. */
  DeviceBuffer: new (length: number) => NativeDeviceBuffer;

  // Internal hooks of the GPU benchmark (bench/gpu/bench.ts); no part of the package's API.
  /**
   * @internal What forward and backward calls record from now on: 0 nothing (the default), 1 CUDA
   * events around each call, 2 also around each cuBLAS product. Process-wide.
   */
  _benchTiming(level: 0 | 1 | 2): void;
  /** @internal The calls recorded since the last take, in the order they finished. */
  _benchTake(): NativeCallTime[];
  /** @internal L2 size, multiprocessors and free memory of device 0. */
  _benchDevice(): NativeBenchDevice;
  /** @internal Milliseconds of each of `reps` n x n x n fp32 (or tf32) cuBLAS products. */
  _benchGemm(n: number, tf32: boolean, reps: number): number[];
  /** @internal Milliseconds of each of `reps` device-to-device copies of `bytes`. */
  _benchCopy(bytes: number, reps: number): number[];
  /** @internal Starts the peaks of `memoryStats()` again from the current figures. */
  _benchResetPeak(): void;
}

/** The result of loading: the addon, or why it could not be loaded. */
export type NativeLoad = { addon: NativeAddon; error: null } | { addon: null; error: string };

/** The package root: one folder above this file, in lib/ as in dist/. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The command that builds the module from source in an installed package (its `bin`). */
export const BUILD_COMMAND = 'npx contranorm-build';

/** Ends the reason when no module loads: how to build one. */
const BUILD_HINT =
  `\`${BUILD_COMMAND}\` builds one from source ` +
  '(needs the CUDA toolkit, CMake and a C++ compiler)';

let loaded: NativeLoad | null = null;

/**
 * Loads the native module once; later calls return the same result. `CONTRANORM_NATIVE_PATH`,
 * when set, names the module file to load instead (a build made elsewhere, such as the CPU
 * emulation of native/emu).
 */
export function loadNative(): NativeLoad {
  if (loaded !== null) return loaded;
  const file = process.env.CONTRANORM_NATIVE_PATH;
  try {
    const require = createRequire(import.meta.url);
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    const addon = (file ? require(resolve(file)) : nodeGypBuild(packageRoot)) as NativeAddon;
    log('native module %s loaded from %s', addon.version, file || packageRoot);
    loaded = { addon, error: null };
  } catch (err) {
    let message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    // node-gyp-build found neither a local build nor a prebuild for this platform, or the one
    // it found does not load here (an older C library, say)
    const platform = `${process.platform}-${process.arch}`;
    if (message.startsWith('No native build was found')) {
      message = `no prebuilt binary for ${platform} and no local build; ${BUILD_HINT}`;
    } else if (!file) {
      message = `${message}; ${BUILD_HINT}`;
    } else {
      message = `CONTRANORM_NATIVE_PATH=${file}: ${message}`;
    }
    log('native module not loaded: %s', message);
    loaded = { addon: null, error: message };
  }
  return loaded;
}
