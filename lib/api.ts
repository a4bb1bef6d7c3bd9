/**
 * The functional API: forward and backward, synchronous and as Promises.
 */
import { selectBackend } from './backend.ts';
import { rangeError, typeError } from './errors.ts';
import { ContraNormSaved } from './saved.ts';
import { checkFloat32, overlaps, planForward } from './validate.ts';
import type { BackwardOptions, ContraNormGrads, ContraNormOptions, Shape } from './types.ts';

/** What a forward call returns: the output and the context its backward needs. */
export interface ContraNormResult {
  /** `[B, N, D]`; `options.out` when given. */
  y: Float32Array;
  /** The context for `contraNormBackward`; `null` with `saveForBackward: false`. */
  saved: ContraNormSaved | null;
}

/**
 * ContraNorm forward: `y = LayerNorm(V - s * softmax(xn xn^T / tau) V)` per item.
 *
 * `x` is read in place (any `byteOffset`, `SharedArrayBuffer` backing) and never written.
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
): ContraNormResult {
  const { x: input, plan, out } = planForward(x, shape, options);
  const impl = selectBackend(plan.backend);
  const { y, state } = impl.forward(input, plan, out);
  return { y, saved: state === null ? null : new ContraNormSaved(impl, plan, state) };
}

/**
 * ContraNorm backward: the gradients for `x`, the scale and the LayerNorm weight and bias,
 * given `dy` (`[B, N, D]`, the gradient of the loss for `y`) and the forward call's `saved`.
 *
 * @example
 * const { y, saved } = contraNorm(x, [B, N, D], { scale: new Float32Array(D).fill(0.1) });
 * const { dx, dScale } = contraNormBackward(dLossDy, saved!);
 */
export function contraNormBackward(
  dy: Float32Array,
  saved: ContraNormSaved,
  options?: BackwardOptions,
): ContraNormGrads {
  const { impl, plan, state, grad, out } = planBackward(dy, saved, options);
  return impl.backward(grad, plan, state, out);
}

/**
 * `contraNorm` as a Promise. On CUDA the work runs off the main thread, so the event loop
 * stays free; on the CPU path it runs on the calling thread after the current tick.
 * Do not modify `x` or `options` buffers until the Promise settles.
 */
export async function contraNormAsync(
  x: Float32Array,
  shape: Shape | number[],
  options?: ContraNormOptions,
): Promise<ContraNormResult> {
  const { x: input, plan, out } = planForward(x, shape, options);
  const impl = selectBackend(plan.backend);
  const { y, state } = await impl.forwardAsync(input, plan, out);
  return { y, saved: state === null ? null : new ContraNormSaved(impl, plan, state) };
}

/** `contraNormBackward` as a Promise; see `contraNormAsync` for where the work runs. */
export async function contraNormBackwardAsync(
  dy: Float32Array,
  saved: ContraNormSaved,
  options?: BackwardOptions,
): Promise<ContraNormGrads> {
  const { impl, plan, state, grad, out } = planBackward(dy, saved, options);
  return impl.backwardAsync(grad, plan, state, out);
}

function planBackward(dy: unknown, saved: unknown, options: unknown) {
  if (!(saved instanceof ContraNormSaved)) {
    throw typeError('saved', 'the saved context of a contraNorm call', saved);
  }
  const { impl, plan, state } = saved.unpack();
  const { B, N, D } = plan;
  const grad = checkFloat32('dy', dy);
  if (grad.length !== B * N * D) {
    throw rangeError(
      'dy',
      `length B*N*D = ${B * N * D} of the saved shape [${B}, ${N}, ${D}]`,
      dy,
      'ERR_CONTRANORM_SHAPE',
    );
  }
  if (options === undefined) options = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw typeError('options', 'an object', options);
  }
  for (const key of Object.keys(options)) {
    if (key !== 'out')
      throw typeError(`options.${key}`, 'a known option (out)', 'an unknown option');
  }
  let out: Float32Array | null = null;
  const o = options as BackwardOptions;
  if (o.out !== undefined) {
    out = checkFloat32('options.out', o.out, B * N * D);
    if (overlaps(out, grad)) {
      throw rangeError('options.out', 'a buffer that does not overlap dy', 'an overlapping view');
    }
  }
  return { impl, plan, state, grad, out };
}
