/**
 * `ContraNorm`: the layer with its parameters (the scale, the LayerNorm weight and bias) and
 * their gradients, for code that trains with a hand-written optimizer.
 */
import { rangeError, typeError, unknownOption } from './errors.ts';
import { contraNorm, contraNormBackward } from './api.ts';
import type { ContraNormResult } from './api.ts';
import type { ContraNormSaved } from './saved.ts';
import type {
  BackendName,
  BackwardOptions,
  ContraNormGrads,
  ContraNormOptions,
  Mode,
  ScaleParam,
  Shape,
} from './types.ts';
import { checkFloat32 } from './check.ts';
import { OPTION_KEYS, planForward } from './validate.ts';

/** A trainable tensor: `value` is read by `forward`, `grad` accumulates in `backward`. */
export interface Parameter {
  readonly name: 'scale' | 'weight' | 'bias';
  /** Update it in place; `forward` checks that every value is finite. */
  readonly value: Float32Array;
  readonly grad: Float32Array;
}

/** Options of the layer. Those shared with `contraNorm` have the same meaning and defaults. */
export interface ContraNormLayerOptions {
  /**
   * Initial `s`: a number (one scalar parameter) or a `Float32Array` of length D (one per
   * channel). Default `0.1`.
   */
  scale?: number | Float32Array;
  /**
   * `exp` stores `log s`, so `s` stays positive under any update (floored at the smallest
   * normal float32). Default `'linear'`.
   */
  scaleParam?: ScaleParam;
  temperature?: number;
  identity?: boolean;
  dualNorm?: boolean;
  preNorm?: boolean;
  mode?: Mode;
  /**
   * `true` (default): LayerNorm with a weight (ones) and a bias (zeros) as parameters.
   * `{ affine: false }`: LayerNorm without parameters. `false`: no LayerNorm.
   */
  layerNorm?: boolean | { affine?: boolean; eps?: number };
  eps?: number;
  precision?: 'fp32' | 'tf32';
  backend?: BackendName;
}

/** Per-call inputs of `ContraNorm.forward`. */
export interface LayerCallOptions {
  lengths?: Int32Array | Uint32Array | readonly number[];
  mask?: Uint8Array | readonly boolean[];
  out?: Float32Array;
  saveForBackward?: boolean;
}

/**
 * ContraNorm with its parameters. `forward` returns `{ y, saved }`; `backward(dy, saved)`
 * returns `dx` and adds the parameter gradients into `parameters()[k].grad`.
 *
 * @example
 * const layer = new ContraNorm(64, { scale: 0.1, dualNorm: true });
 * const { y, saved } = layer.forward(x, [B, N, 64]);
 * const dx = layer.backward(dy, saved!);
 * for (const p of layer.parameters()) {
 *   for (let i = 0; i < p.value.length; i++) p.value[i] -= 0.01 * p.grad[i];
 * }
 * layer.zeroGrad();
 */
export class ContraNorm {
  /** Channels, D. */
  readonly dim: number;
  readonly scale: Parameter;
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;
  readonly options: Readonly<ContraNormLayerOptions>;
  #lnEps: number | undefined;
  #useLayerNorm: boolean;
  /** The contexts this layer's forward made: a backward takes no other. */
  #made = new WeakSet<ContraNormSaved>();

  constructor(dim: number, options: ContraNormLayerOptions = {}) {
    if (typeof dim !== 'number') throw typeError('dim', 'a positive integer', dim);
    if (!Number.isSafeInteger(dim) || dim < 1) throw rangeError('dim', 'a positive integer', dim);
    if (typeof options !== 'object' || options === null || Array.isArray(options)) {
      throw typeError('options', 'an object', options);
    }
    for (const key of Object.keys(options)) {
      if (!LAYER_KEYS.has(key)) throw unknownOption(`options.${key}`, LAYER_KEYS);
    }
    this.dim = dim;
    this.options = Object.freeze({ ...options });

    // scale, stored as s or log s
    const scaleParam = options.scaleParam ?? 'linear';
    const init = options.scale === undefined ? 0.1 : options.scale;
    let s: Float32Array;
    if (typeof init === 'number') s = Float32Array.of(init);
    else if (init instanceof Float32Array && init.length === 1) s = init.slice();
    else if (init instanceof Float32Array) s = checkFloat32('options.scale', init, dim).slice();
    else throw typeError('options.scale', 'a number or a Float32Array', init);

    // layer norm
    const ln = options.layerNorm === undefined ? true : options.layerNorm;
    if (typeof ln === 'object' && ln !== null) {
      for (const key of Object.keys(ln)) {
        if (!LAYER_NORM_KEYS.has(key)) {
          throw unknownOption(`options.layerNorm.${key}`, LAYER_NORM_KEYS);
        }
      }
      if (ln.affine !== undefined && typeof ln.affine !== 'boolean') {
        throw typeError('options.layerNorm.affine', 'a boolean', ln.affine);
      }
    } else if (typeof ln !== 'boolean') {
      throw typeError('options.layerNorm', 'a boolean or { affine?, eps? }', ln);
    }
    this.#useLayerNorm = ln !== false;
    const affine = typeof ln === 'object' ? ln.affine !== false : ln;
    this.#lnEps = typeof ln === 'object' ? ln.eps : undefined;
    this.weight = affine
      ? { name: 'weight', value: new Float32Array(dim).fill(1), grad: new Float32Array(dim) }
      : null;
    this.bias = affine
      ? { name: 'bias', value: new Float32Array(dim), grad: new Float32Array(dim) }
      : null;

    // every value checked now, not at the first forward, by an empty call
    const given = typeof init === 'number' ? init : s;
    planForward(new Float32Array(0), [0, 1, dim], { ...this.#callOptions(s), scale: given });
    if (scaleParam === 'exp') for (let i = 0; i < s.length; i++) s[i] = Math.log(s[i]);
    this.scale = { name: 'scale', value: s, grad: new Float32Array(s.length) };
  }

  /** The trainable parameters, in a fixed order: scale, then weight and bias when present. */
  parameters(): Parameter[] {
    const list = [this.scale];
    if (this.weight !== null) list.push(this.weight);
    if (this.bias !== null) list.push(this.bias);
    return list;
  }

  /** Sets every gradient to zero. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad.fill(0);
  }

  /** The forward pass with the current parameter values; `shape` is `[B, N, dim]`. */
  forward(x: Float32Array, shape: Shape | number[], call: LayerCallOptions = {}): ContraNormResult {
    if (Array.isArray(shape) && shape[2] !== this.dim) {
      throw rangeError(
        'shape[2]',
        `D = ${this.dim}, the layer's dim`,
        shape[2],
        'ERR_CONTRANORM_SHAPE',
      );
    }
    for (const key of Object.keys(call ?? {})) {
      if (!CALL_KEYS.has(key)) throw unknownOption(`call.${key}`, CALL_KEYS);
    }

    for (const p of this.parameters()) {
      for (let i = 0; i < p.value.length; i++) {
        if (!Number.isFinite(p.value[i])) {
          throw rangeError(`${p.name}.value[${i}]`, 'a finite number', p.value[i]);
        }
      }
    }

    // exp(log s) can underflow float32 for a very negative log s: keep s positive
    const s = this.scale.value;
    const exp = this.options.scaleParam === 'exp';
    const scale = exp ? s.map((v) => Math.max(Math.exp(v), MIN_NORMAL_F32)) : s;
    if (exp && !scale.every(Number.isFinite)) {
      throw rangeError('scale.value', 'log s under 88.7, so that s is a finite float32', s);
    }
    const result = contraNorm(x, shape, { ...this.#callOptions(scale), ...call });
    if (result.saved !== null) this.#made.add(result.saved);
    return result;
  }

  /** The options of `contraNorm` for this layer, with `s` itself as the scale. */
  #callOptions(scale: Float32Array): ContraNormOptions {
    const o = this.options;
    return {
      scale: scale.length === 1 ? scale[0] : scale,
      scaleParam: o.scaleParam,
      temperature: o.temperature,
      identity: o.identity,
      dualNorm: o.dualNorm,
      preNorm: o.preNorm,
      mode: o.mode,
      eps: o.eps,
      precision: o.precision,
      backend: o.backend,
      layerNorm: this.#useLayerNorm
        ? { weight: this.weight?.value, bias: this.bias?.value, eps: this.#lnEps }
        : false,
    };
  }

  /** The backward pass: returns `dx` and adds the parameter gradients into their `grad`. */
  backward(dy: Float32Array, saved: ContraNormSaved, options: BackwardOptions = {}): Float32Array {
    if (!this.#made.has(saved)) {
      throw typeError('saved', "the saved context of this layer's forward", saved);
    }
    const grads: ContraNormGrads = contraNormBackward(dy, saved, options);
    addInto(this.scale.grad, grads.dScale);
    if (this.weight !== null && grads.dWeight !== undefined)
      addInto(this.weight.grad, grads.dWeight);
    if (this.bias !== null && grads.dBias !== undefined) addInto(this.bias.grad, grads.dBias);
    return grads.dx;
  }
}

/** Per-call options of `forward`; the layer takes every other option of `contraNorm`. */
const CALL_KEYS = new Set<string>(['lengths', 'mask', 'out', 'saveForBackward']);
const LAYER_KEYS = new Set<string>([...OPTION_KEYS].filter((k) => !CALL_KEYS.has(k)));
const LAYER_NORM_KEYS = new Set<string>(['affine', 'eps']);

/** The smallest positive normal float32, the floor of s under `scaleParam: 'exp'`. */
const MIN_NORMAL_F32 = 2 ** -126;

function addInto(target: Float32Array, delta: Float32Array): void {
  for (let i = 0; i < target.length; i++) target[i] += delta[i];
}
