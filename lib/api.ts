/**
 * The functional API: forward and backward, synchronous and as Promises, on Float32Arrays (any
 * backend) or on DeviceTensors (CUDA, with no copy through the host).
 */
import { selectBackend } from './backend.ts';
import type { BackendImpl, SavedState } from './plan.ts';
import {
  backwardOnDevice,
  backwardOnDeviceAsync,
  DeviceTensor,
  forwardOnDevice,
  forwardOnDeviceAsync,
} from './device.ts';
import { Phrase, rangeError, typeError, unknownOption } from './errors.ts';
import { ContraNormSaved } from './saved.ts';
import { checkFloat32, overlaps } from './check.ts';
import { checkDeviceTensor, planForward } from './validate.ts';
import type { Plan } from './plan.ts';
import type {
  BackwardOptions,
  ContraNormDeviceGrads,
  ContraNormDeviceOptions,
  ContraNormGrads,
  ContraNormOptions,
  DeviceBackwardOptions,
  Shape,
} from './types.ts';

/** What a forward call returns: the output and the context its backward needs. */
export interface ContraNormResult {
  /** `[B, N, D]`; `options.out` when given. */
  y: Float32Array;
  /** The context for `contraNormBackward`; `null` with `saveForBackward: false`. */
  saved: ContraNormSaved | null;
}

/** What a forward call on a `DeviceTensor` returns: `y` stays on the device. */
export interface ContraNormDeviceResult {
  /** `[B, N, D]` in device memory; `options.out` when given. */
  y: DeviceTensor;
  /** The context for `contraNormBackward`; `null` with `saveForBackward: false`. */
  saved: ContraNormSaved | null;
}

function savedOf(impl: BackendImpl, plan: Plan, state: SavedState | null): ContraNormSaved | null {
  return state === null ? null : new ContraNormSaved(impl, plan, state);
}

/**
 * ContraNorm forward: `y = LayerNorm(V - s * softmax(xn xn^T / tau) V)` per item.
 *
 * `x` is read in place (any `byteOffset`, `SharedArrayBuffer` backing) and never written. A
 * `DeviceTensor` x runs on CUDA and gives `y` as a DeviceTensor.
 *
 * @example
 * const x = new Float32Array(2 * 8 * 16).map(() => Math.random() - 0.5);
 * const { y, saved } = contraNorm(x, [2, 8, 16], { scale: 0.1, temperature: 1 });
 * const { dx } = contraNormBackward(new Float32Array(y.length).fill(1), saved!);
 */
export function contraNorm(
  x: Float32Array,
  shape: Shape | number[],
  options?: ContraNormOptions,
): ContraNormResult;
export function contraNorm(
  x: DeviceTensor,
  shape: Shape | number[],
  options?: ContraNormDeviceOptions,
): ContraNormDeviceResult;
export function contraNorm(
  x: Float32Array | DeviceTensor,
  shape: Shape | number[],
  options?: ContraNormOptions | ContraNormDeviceOptions,
): ContraNormResult | ContraNormDeviceResult {
  const { x: input, plan, out } = planForward(x, shape, options);
  if (input instanceof DeviceTensor) {
    const { y, state, impl } = forwardOnDevice(input, plan, out as DeviceTensor | null);
    return { y, saved: savedOf(impl, plan, state) };
  }
  const impl = selectBackend(plan.backend);
  const { y, state } = impl.forward(input, plan, out as Float32Array | null);
  return { y, saved: savedOf(impl, plan, state) };
}

/**
 * ContraNorm backward: the gradients for `x`, the scale and the LayerNorm weight and bias,
 * given `dy` (`[B, N, D]`, the gradient of the loss for `y`) and the forward call's `saved`.
 * A `DeviceTensor` dy (for a context made on CUDA) gives `dx` as a DeviceTensor.
 *
 * @example
 * const { y, saved } = contraNorm(x, [B, N, D], { scale: new Float32Array(D).fill(0.1) });
 * const { dx, dScale } = contraNormBackward(dLossDy, saved!);
 */
export function contraNormBackward(
  dy: Float32Array,
  saved: ContraNormSaved,
  options?: BackwardOptions,
): ContraNormGrads;
export function contraNormBackward(
  dy: DeviceTensor,
  saved: ContraNormSaved,
  options?: DeviceBackwardOptions,
): ContraNormDeviceGrads;
export function contraNormBackward(
  dy: Float32Array | DeviceTensor,
  saved: ContraNormSaved,
  options?: BackwardOptions | DeviceBackwardOptions,
): ContraNormGrads | ContraNormDeviceGrads {
  const { impl, plan, state, grad, out } = planBackward(dy, saved, options);
  if (grad instanceof DeviceTensor)
    return backwardOnDevice(grad, state, out as DeviceTensor | null);
  return impl.backward(grad, plan, state, out as Float32Array | null);
}

/**
 * `contraNorm` as a Promise. On CUDA the work runs off the main thread, so the event loop
 * stays free: do not modify `x` or `options` buffers until the Promise settles. On the CPU path
 * the work runs on the calling thread before the Promise is returned.
 */
export function contraNormAsync(
  x: Float32Array,
  shape: Shape | number[],
  options?: ContraNormOptions,
): Promise<ContraNormResult>;
export function contraNormAsync(
  x: DeviceTensor,
  shape: Shape | number[],
  options?: ContraNormDeviceOptions,
): Promise<ContraNormDeviceResult>;
export async function contraNormAsync(
  x: Float32Array | DeviceTensor,
  shape: Shape | number[],
  options?: ContraNormOptions | ContraNormDeviceOptions,
): Promise<ContraNormResult | ContraNormDeviceResult> {
  const { x: input, plan, out } = planForward(x, shape, options);
  if (input instanceof DeviceTensor) {
    const { y, state, impl } = await forwardOnDeviceAsync(input, plan, out as DeviceTensor | null);
    return { y, saved: savedOf(impl, plan, state) };
  }
  const impl = selectBackend(plan.backend);
  const { y, state } = await impl.forwardAsync(input, plan, out as Float32Array | null);
  return { y, saved: savedOf(impl, plan, state) };
}

/** `contraNormBackward` as a Promise; see `contraNormAsync` for where the work runs. */
export function contraNormBackwardAsync(
  dy: Float32Array,
  saved: ContraNormSaved,
  options?: BackwardOptions,
): Promise<ContraNormGrads>;
export function contraNormBackwardAsync(
  dy: DeviceTensor,
  saved: ContraNormSaved,
  options?: DeviceBackwardOptions,
): Promise<ContraNormDeviceGrads>;
export async function contraNormBackwardAsync(
  dy: Float32Array | DeviceTensor,
  saved: ContraNormSaved,
  options?: BackwardOptions | DeviceBackwardOptions,
): Promise<ContraNormGrads | ContraNormDeviceGrads> {
  const { impl, plan, state, grad, out } = planBackward(dy, saved, options);
  if (grad instanceof DeviceTensor) {
    return backwardOnDeviceAsync(grad, state, out as DeviceTensor | null);
  }
  return impl.backwardAsync(grad, plan, state, out as Float32Array | null);
}

function planBackward(dy: unknown, saved: unknown, options: unknown) {
  if (!(saved instanceof ContraNormSaved)) {
    throw typeError('saved', 'the saved context of a contraNorm call', saved);
  }
  const { impl, plan, state } = saved.unpack();
  const { B, N, D } = plan;
  const onDevice = dy instanceof DeviceTensor;
  const grad = onDevice ? checkDeviceTensor('dy', dy) : checkFloat32('dy', dy);
  if (grad.length !== B * N * D) {
    throw rangeError(
      'dy',
      `length B*N*D = ${B * N * D} of the saved shape [${B}, ${N}, ${D}]`,
      dy,
      'ERR_CONTRANORM_SHAPE',
    );
  }
  if (onDevice && impl.name !== 'cuda') {
    throw typeError('dy', 'a Float32Array for a context made on the CPU path', dy);
  }
  if (options === undefined) options = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw typeError('options', 'an object', options);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'out') throw unknownOption(`options.${key}`, ['out']);
  }
  let out: Float32Array | DeviceTensor | null = null;
  const o = options as { out?: unknown };
  if (o.out !== undefined && grad instanceof DeviceTensor) {
    out = checkDeviceTensor('options.out', o.out, B * N * D);
    if (out === grad)
      throw rangeError('options.out', 'a DeviceTensor other than dy', new Phrase('dy itself'));
  } else if (o.out !== undefined) {
    out = checkFloat32('options.out', o.out, B * N * D);
    if (overlaps(out, grad as Float32Array)) {
      throw rangeError(
        'options.out',
        'a buffer that does not overlap dy',
        new Phrase('an overlapping view'),
      );
    }
  }
  return { impl, plan, state, grad, out };
}
