/**
 * Argument checks and option defaults. Every public entry point runs its arguments through
 * here first, so the backends receive a `Plan` whose every field is known to be valid.
 */
import { checkFloat32, isDetached, overlaps } from './check.ts';
import { DeviceTensor } from './device.ts';
import { ContraNormError, Phrase, rangeError, typeError, unknownOption } from './errors.ts';
import type { Plan } from './plan.ts';
import type { BackendName, ContraNormOptions, Mode, ScaleParam, Shape } from './types.ts';

/** The option names of `contraNorm`. */
export const OPTION_KEYS: ReadonlySet<string> = new Set<string>([
  'scale',
  'scaleParam',
  'temperature',
  'identity',
  'dualNorm',
  'preNorm',
  'mode',
  'lengths',
  'mask',
  'layerNorm',
  'eps',
  'precision',
  'out',
  'backend',
  'saveForBackward',
]);
const LAYER_NORM_KEYS = new Set<string>(['weight', 'bias', 'eps']);
const BACKENDS: readonly BackendName[] = ['auto', 'cuda', 'cpu'];

/** Checks that `value` is a live `DeviceTensor`, of `length` elements when given. */
export function checkDeviceTensor(name: string, value: unknown, length?: number): DeviceTensor {
  if (!(value instanceof DeviceTensor)) throw typeError(name, 'a DeviceTensor', value);
  if (value.disposed) {
    throw new ContraNormError('ERR_CONTRANORM_DISPOSED', `${name}: this DeviceTensor was disposed`);
  }
  if (length !== undefined && value.length !== length) {
    throw rangeError(
      name,
      `length ${length}`,
      new Phrase(`a DeviceTensor of length ${value.length}`),
      'ERR_CONTRANORM_SHAPE',
    );
  }
  return value;
}

/** Checks `[B, N, D]`: three non-negative integers whose product fits one typed array. */
export function checkShape(shape: unknown): { B: number; N: number; D: number } {
  const expected = 'three non-negative integers [B, N, D]';
  if (!Array.isArray(shape) || shape.length !== 3) {
    throw typeError('shape', expected, shape);
  }
  for (let i = 0; i < 3; i++) {
    const v = shape[i];
    if (typeof v !== 'number') throw typeError(`shape[${i}]`, 'a non-negative integer', v);
    if (!Number.isSafeInteger(v) || v < 0)
      throw rangeError(
        `shape[${i}]`,
        'a non-negative integer up to 2^53 - 1',
        v,
        'ERR_CONTRANORM_SHAPE',
      );
  }
  const [B, N, D] = shape as unknown as Shape;
  if (B * N * D > 2 ** 32) {
    throw rangeError(
      'shape',
      'B*N*D of at most 2^32 elements',
      new Phrase(`[${B}, ${N}, ${D}]`),
      'ERR_CONTRANORM_SHAPE',
    );
  }
  return { B, N, D };
}

function checkBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

/** The smallest positive normal and the largest finite float32. */
const FLT_MIN = 2 ** -126;
const FLT_MAX = (2 - 2 ** -23) * 2 ** 127;

/**
 * A positive number in float32's normal range `[FLT_MIN, FLT_MAX]`, so that it and its
 * reciprocal are finite in float32 on every backend.
 */
function checkPositiveFinite(name: string, value: unknown, fallback: number): number {
  const expected = `a finite positive number in [${FLT_MIN.toExponential(3)}, ${FLT_MAX.toExponential(3)}]`;
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw typeError(name, expected, value);
  if (!(value >= FLT_MIN && value <= FLT_MAX)) throw rangeError(name, expected, value);
  return value;
}

/** A copy of a LayerNorm parameter, with every value finite. */
function checkParameter(name: string, value: unknown, D: number): Float32Array {
  const copy = checkFloat32(name, value, D).slice();
  for (let j = 0; j < D; j++) {
    if (!Number.isFinite(copy[j])) throw rangeError(`${name}[${j}]`, 'a finite number', copy[j]);
  }
  return copy;
}

function checkEnum<T extends string>(
  name: string,
  value: unknown,
  allowed: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string')
    throw typeError(name, allowed.map((a) => `'${a}'`).join(' or '), value);
  if (!(allowed as readonly string[]).includes(value)) {
    throw rangeError(name, allowed.map((a) => `'${a}'`).join(' or '), value);
  }
  return value as T;
}

/** The backend named by the call, else by `CONTRANORM_BACKEND`, else `auto`. */
export function resolveBackendName(value: unknown): BackendName {
  if (value !== undefined) return checkEnum('options.backend', value, BACKENDS, 'auto');
  const env = process.env.CONTRANORM_BACKEND;
  if (env === undefined || env === '') return 'auto';
  return checkEnum('CONTRANORM_BACKEND', env, BACKENDS, 'auto');
}

function checkScale(value: unknown, D: number, scaleParam: ScaleParam): Float32Array {
  let given: ArrayLike<number>;
  if (value === undefined) {
    given = [0.1];
  } else if (typeof value === 'number') {
    given = [value];
  } else if (value instanceof Float32Array) {
    checkFloat32('options.scale', value);
    if (value.length !== 1 && value.length !== D) {
      throw rangeError(
        'options.scale',
        `a number or a Float32Array of length 1 or D = ${D}`,
        value,
        'ERR_CONTRANORM_SHAPE',
      );
    }
    given = value;
  } else {
    throw typeError('options.scale', 'a number or a Float32Array', value);
  }

  // every s must be a finite float32, and positive under 'exp'
  const scale = Float32Array.from(given);
  const exp = scaleParam === 'exp';
  for (let i = 0; i < scale.length; i++) {
    const name =
      typeof value === 'number' || value === undefined ? 'options.scale' : `options.scale[${i}]`;
    if (!Number.isFinite(scale[i])) {
      throw rangeError(name, `a finite float32 (|s| <= ${FLT_MAX.toExponential(3)})`, given[i]);
    }
    if (exp && !(scale[i] > 0)) {
      throw rangeError(name, "a positive float32 scale with scaleParam 'exp'", given[i]);
    }
  }
  return scale;
}

function checkLengths(value: unknown, B: number, N: number): Int32Array | null {
  if (value === undefined) return null;
  const isIntArray = value instanceof Int32Array || value instanceof Uint32Array;
  if (!isIntArray && !Array.isArray(value)) {
    throw typeError('options.lengths', 'an Int32Array, Uint32Array or array of integers', value);
  }
  const src = value as ArrayLike<unknown>;
  if (isIntArray && isDetached(value)) {
    throw typeError(
      'options.lengths',
      'an array over a live buffer',
      new Phrase('a detached buffer'),
    );
  }
  if (src.length !== B) {
    throw rangeError('options.lengths', `length B = ${B}`, value, 'ERR_CONTRANORM_SHAPE');
  }
  const lengths = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const v = src[b];
    if (typeof v !== 'number') throw typeError(`options.lengths[${b}]`, 'an integer', v);
    if (!Number.isInteger(v) || v < 0 || v > N) {
      throw rangeError(`options.lengths[${b}]`, `an integer in [0, N = ${N}]`, v);
    }
    lengths[b] = v;
  }
  return lengths;
}

function checkMask(
  value: unknown,
  B: number,
  M: number,
  mode: Mode,
): { mask: Uint8Array | null; batched: boolean } {
  if (value === undefined) return { mask: null, batched: false };
  const side = mode === 'tokens' ? 'N' : 'D';
  const expected = `length ${side}*${side} = ${M * M} or B*${side}*${side} = ${B * M * M} (${mode} mode)`;
  let mask: Uint8Array;
  if (value instanceof Uint8Array) {
    if (isDetached(value))
      throw typeError(
        'options.mask',
        'a Uint8Array over a live buffer',
        new Phrase('a detached buffer'),
      );
    mask = value;
  } else if (Array.isArray(value)) {
    mask = new Uint8Array(value.length);
    for (let i = 0; i < value.length; i++) {
      if (typeof value[i] !== 'boolean')
        throw typeError(`options.mask[${i}]`, 'a boolean', value[i]);
      mask[i] = value[i] ? 1 : 0;
    }
  } else {
    throw typeError('options.mask', 'a Uint8Array or an array of booleans', value);
  }
  if (mask.length === M * M) return { mask, batched: false };
  if (mask.length === B * M * M) return { mask, batched: true };
  throw rangeError('options.mask', expected, value, 'ERR_CONTRANORM_SHAPE');
}

function checkLayerNorm(
  value: unknown,
  D: number,
): { layerNorm: boolean; weight: Float32Array | null; bias: Float32Array | null; lnEps: number } {
  if (value === false) return { layerNorm: false, weight: null, bias: null, lnEps: 1e-6 };
  if (value === undefined || value === true)
    return { layerNorm: true, weight: null, bias: null, lnEps: 1e-6 };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw typeError('options.layerNorm', 'an object { weight?, bias?, eps? } or false', value);
  }
  for (const key of Object.keys(value)) {
    if (!LAYER_NORM_KEYS.has(key)) throw unknownOption(`options.layerNorm.${key}`, LAYER_NORM_KEYS);
  }
  const ln = value as { weight?: unknown; bias?: unknown; eps?: unknown };
  const weight =
    ln.weight === undefined ? null : checkParameter('options.layerNorm.weight', ln.weight, D);
  const bias = ln.bias === undefined ? null : checkParameter('options.layerNorm.bias', ln.bias, D);
  const lnEps = checkPositiveFinite('options.layerNorm.eps', ln.eps, 1e-6);
  return { layerNorm: true, weight, bias, lnEps };
}

/** Validates a forward call and resolves every option to its value. */
export function planForward(
  x: unknown,
  shape: unknown,
  options: unknown,
): { x: Float32Array | DeviceTensor; plan: Plan; out: Float32Array | DeviceTensor | null } {
  const { B, N, D } = checkShape(shape);
  const onDevice = x instanceof DeviceTensor;
  const input = onDevice ? checkDeviceTensor('x', x, B * N * D) : checkFloat32('x', x, B * N * D);
  if (options === undefined) options = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw typeError('options', 'an object', options);
  }
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.has(key)) throw unknownOption(`options.${key}`, OPTION_KEYS);
  }
  const o = options as ContraNormOptions & Record<string, unknown>;
  const mode = checkEnum<Mode>('options.mode', o.mode, ['tokens', 'features'], 'tokens');
  const M = mode === 'tokens' ? N : D;
  const scaleParam = checkEnum<ScaleParam>(
    'options.scaleParam',
    o.scaleParam,
    ['linear', 'exp'],
    'linear',
  );
  const scale = checkScale(o.scale, D, scaleParam);
  const temperature = checkPositiveFinite('options.temperature', o.temperature, 1);
  const eps = checkPositiveFinite('options.eps', o.eps, 1e-12);
  const { mask, batched } = checkMask(o.mask, B, M, mode);
  const ln = checkLayerNorm(o.layerNorm, D);
  let out: Float32Array | DeviceTensor | null = null;
  if (o.out !== undefined && input instanceof DeviceTensor) {
    out = checkDeviceTensor('options.out', o.out, B * N * D);
    if (out === input) throw rangeError('options.out', 'a DeviceTensor other than x', 'x itself');
  } else if (o.out !== undefined) {
    out = checkFloat32('options.out', o.out, B * N * D);
    if (overlaps(out, input as Float32Array))
      throw rangeError(
        'options.out',
        'a buffer that does not overlap x',
        new Phrase('an overlapping view'),
      );
  }
  const plan: Plan = {
    B,
    N,
    D,
    M,
    mode,
    scale,
    scaleParam,
    temperature,
    identity: checkBoolean('options.identity', o.identity, false),
    dualNorm: checkBoolean('options.dualNorm', o.dualNorm, false),
    preNorm: checkBoolean('options.preNorm', o.preNorm, false),
    lengths: checkLengths(o.lengths, B, N),
    mask,
    maskBatched: batched,
    layerNorm: ln.layerNorm,
    weight: ln.weight,
    bias: ln.bias,
    lnEps: ln.lnEps,
    eps,
    precision: checkEnum('options.precision', o.precision, ['fp32', 'tf32'], 'fp32'),
    saveForBackward: checkBoolean('options.saveForBackward', o.saveForBackward, true),
    backend: resolveBackendName(o.backend),
  };
  if (onDevice && plan.backend === 'cpu') {
    throw rangeError(
      'options.backend',
      "'auto' or 'cuda' for a DeviceTensor x (from the option or CONTRANORM_BACKEND)",
      plan.backend,
    );
  }
  return { x: input, plan, out };
}
