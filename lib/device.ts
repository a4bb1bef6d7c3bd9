/**
 * `DeviceTensor`: float32 data resident in GPU memory, so that calls can be chained without
 * copies through the host. A forward call on a DeviceTensor runs on CUDA and returns `y` as a
 * DeviceTensor; its backward takes `dy` as a DeviceTensor and returns `dx` as one.
 */
import type { BackendImpl, SavedState } from './plan.ts';
import { requireCuda } from './cuda.ts';
import type { CudaState } from './cuda.ts';
import { ContraNormError, Phrase, rangeError, typeError } from './errors.ts';
import type { NativeDeviceBuffer, NativeGrads } from './native.ts';
import type { ContraNormDeviceGrads } from './types.ts';
import { checkFloat32 } from './check.ts';
import type { Plan } from './plan.ts';

function checkDims(shape: unknown, length: number): readonly number[] {
  if (shape === undefined) return Object.freeze([length]);
  if (!Array.isArray(shape)) throw typeError('shape', 'an array of non-negative integers', shape);
  let product = 1;
  for (let i = 0; i < shape.length; i++) {
    const v: unknown = shape[i];
    if (typeof v !== 'number') throw typeError(`shape[${i}]`, 'a non-negative integer', v);
    if (!Number.isSafeInteger(v) || v < 0) {
      throw rangeError(`shape[${i}]`, 'a non-negative integer', v, 'ERR_CONTRANORM_SHAPE');
    }
    product *= v;
  }
  if (product !== length) {
    throw rangeError(
      'shape',
      `dimensions whose product is ${length}`,
      new Phrase(`[${shape.join(', ')}]`),
      'ERR_CONTRANORM_SHAPE',
    );
  }
  return Object.freeze([...(shape as number[])]);
}

const TENSOR_BRAND = Symbol.for('contranorm.DeviceTensor');

/**
 * Float32 data in GPU memory. `dispose()` frees it at once; a tensor that is never disposed is
 * freed when it is garbage-collected, which is a safety net only: GPU memory runs out long before
 * the JavaScript heap feels the pressure of many small handles.
 *
 * @example
 * const x = DeviceTensor.upload(data, [B, N, D]);
 * const { y, saved } = contraNorm(x, [B, N, D]);   // y is a DeviceTensor
 * const host = y.download();
 * x.dispose(); y.dispose(); saved?.dispose();
 */
export class DeviceTensor {
  /** True for a tensor of this package, from its ESM or its CommonJS copy alike. */
  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && TENSOR_BRAND in value;
  }

  /** Number of float32 elements. */
  readonly length: number;
  /** Dimensions given at creation (default `[length]`); their product is `length`. */
  readonly shape: readonly number[];
  #buffer: NativeDeviceBuffer | null;
  /** Calls reading the tensor that have not settled, and whether one is writing it. */
  #readers = 0;
  #writing = false;

  private constructor(buffer: NativeDeviceBuffer, shape: readonly number[]) {
    this.#buffer = buffer;
    this.length = buffer.length;
    this.shape = shape;
    Object.defineProperty(this, TENSOR_BRAND, { value: true });
  }

  /**
   * Copies `data` to GPU memory. Throws a `ContraNormError` (`ERR_CONTRANORM_BACKEND_UNAVAILABLE`)
   * where CUDA cannot run.
   */
  static upload(data: Float32Array, shape?: readonly number[]): DeviceTensor {
    checkFloat32('data', data);
    const tensor = DeviceTensor.empty(data.length, shape);
    try {
      tensor.buffer.upload(data);
    } catch (err) {
      tensor.dispose();
      throw err;
    }
    return tensor;
  }

  /** `length` floats of uninitialized GPU memory, for example as an `out` buffer. */
  static empty(length: number, shape?: readonly number[]): DeviceTensor {
    if (typeof length !== 'number') throw typeError('length', 'a non-negative integer', length);
    if (!Number.isSafeInteger(length) || length < 0) {
      throw rangeError('length', 'a non-negative integer', length, 'ERR_CONTRANORM_SHAPE');
    }
    const dims = checkDims(shape, length);
    const { addon } = requireCuda();
    return new DeviceTensor(new addon.DeviceBuffer(length), dims);
  }

  /** True after `dispose()`. */
  get disposed(): boolean {
    return this.#buffer === null;
  }

  /** Copies the data to the host: into `out` (of the same length) or a new Float32Array. */
  download(out?: Float32Array): Float32Array {
    const dst =
      out === undefined ? new Float32Array(this.length) : checkFloat32('out', out, this.length);
    const release = this.use('DeviceTensor', false);
    try {
      this.buffer.download(dst);
    } finally {
      release();
    }
    return dst;
  }

  /**
   * @internal Marks the tensor in use by a call until the returned function runs. Calls on
   * different streams are not ordered with each other, so a write while any call is using the
   * tensor, or any use while a call is writing it, throws `ERR_CONTRANORM_BUSY` instead of racing.
   */
  use(name: string, write: boolean): () => void {
    if (this.#writing || (write && this.#readers > 0)) {
      throw new ContraNormError(
        'ERR_CONTRANORM_BUSY',
        `${name}: this DeviceTensor is in use by a call that has not settled; await that call first`,
      );
    }
    if (write) this.#writing = true;
    else this.#readers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (write) this.#writing = false;
      else this.#readers--;
    };
  }

  /** Frees the GPU memory now. Work already running on the tensor keeps it until it ends. */
  dispose(): void {
    const buffer = this.#buffer;
    this.#buffer = null;
    buffer?.dispose();
  }

  /** @internal The native buffer; throws once disposed. */
  get buffer(): NativeDeviceBuffer {
    if (this.#buffer === null) {
      throw new ContraNormError(
        'ERR_CONTRANORM_DISPOSED',
        'DeviceTensor: this tensor was disposed',
      );
    }
    return this.#buffer;
  }
}

/** What a forward call on a DeviceTensor gives back. */
interface DeviceForward {
  y: DeviceTensor;
  state: CudaState | null;
  impl: BackendImpl;
}

function gradsOf(g: NativeGrads, dx: DeviceTensor): ContraNormDeviceGrads {
  const grads: ContraNormDeviceGrads = { dx, dScale: g.dScale };
  if (g.dWeight !== undefined) grads.dWeight = g.dWeight;
  if (g.dBias !== undefined) grads.dBias = g.dBias;
  return grads;
}

/** Marks `tensors` in use (each `[tensor, name, write]`); the returned function releases all. */
function useAll(tensors: [DeviceTensor, string, boolean][]): () => void {
  const releases: (() => void)[] = [];
  try {
    for (const [tensor, name, write] of tensors) releases.push(tensor.use(name, write));
  } catch (err) {
    for (const release of releases) release();
    throw err;
  }
  return () => {
    for (const release of releases) release();
  };
}

/** Runs `run` with the tensors in use, and disposes `made` (an output it created) on failure. */
async function guarded<T>(
  tensors: [DeviceTensor, string, boolean][],
  made: DeviceTensor | null,
  run: () => Promise<T>,
): Promise<T> {
  let release: () => void = () => {};
  try {
    release = useAll(tensors);
    return await run();
  } catch (err) {
    made?.dispose();
    throw err;
  } finally {
    release();
  }
}

/** Runs `run` with the tensors in use, and disposes `made` (an output it created) on failure. */
function guardedSync<T>(
  tensors: [DeviceTensor, string, boolean][],
  made: DeviceTensor | null,
  run: () => T,
): T {
  let release: () => void = () => {};
  try {
    release = useAll(tensors);
    return run();
  } catch (err) {
    made?.dispose();
    throw err;
  } finally {
    release();
  }
}

/** @internal The forward on device memory: y is `out` or a new DeviceTensor. */
export function forwardOnDevice(
  x: DeviceTensor,
  plan: Plan,
  out: DeviceTensor | null,
): DeviceForward {
  const { impl, ops } = requireCuda();
  const made = out === null ? DeviceTensor.empty(x.length, [plan.B, plan.N, plan.D]) : null;
  const y = out ?? made!;
  const use: [DeviceTensor, string, boolean][] = [
    [x, 'x', false],
    [y, 'options.out', true],
  ];
  return guardedSync(use, made, () => ({ y, state: ops.forward(x.buffer, plan, y.buffer), impl }));
}

/** @internal `forwardOnDevice` as a Promise, off the JavaScript thread. */
export async function forwardOnDeviceAsync(
  x: DeviceTensor,
  plan: Plan,
  out: DeviceTensor | null,
): Promise<DeviceForward> {
  const { impl, ops } = requireCuda();
  const made = out === null ? DeviceTensor.empty(x.length, [plan.B, plan.N, plan.D]) : null;
  const y = out ?? made!;
  const use: [DeviceTensor, string, boolean][] = [
    [x, 'x', false],
    [y, 'options.out', true],
  ];
  return guarded(use, made, async () => ({
    y,
    state: await ops.forwardAsync(x.buffer, plan, y.buffer),
    impl,
  }));
}

/** @internal The backward on device memory: dx is `out` or a new DeviceTensor. */
export function backwardOnDevice(
  dy: DeviceTensor,
  state: SavedState,
  out: DeviceTensor | null,
): ContraNormDeviceGrads {
  const { ops } = requireCuda();
  const made = out === null ? DeviceTensor.empty(dy.length, dy.shape) : null;
  const dx = out ?? made!;
  const use: [DeviceTensor, string, boolean][] = [
    [dy, 'dy', false],
    [dx, 'options.out', true],
  ];
  return guardedSync(use, made, () => gradsOf(ops.backward(dy.buffer, state, dx.buffer), dx));
}

/** @internal `backwardOnDevice` as a Promise, off the JavaScript thread. */
export async function backwardOnDeviceAsync(
  dy: DeviceTensor,
  state: SavedState,
  out: DeviceTensor | null,
): Promise<ContraNormDeviceGrads> {
  const { ops } = requireCuda();
  const made = out === null ? DeviceTensor.empty(dy.length, dy.shape) : null;
  const dx = out ?? made!;
  const use: [DeviceTensor, string, boolean][] = [
    [dy, 'dy', false],
    [dx, 'options.out', true],
  ];
  return guarded(use, made, async () =>
    gradsOf(await ops.backwardAsync(dy.buffer, state, dx.buffer), dx),
  );
}
