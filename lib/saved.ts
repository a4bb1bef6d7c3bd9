/**
 * The context a forward call returns for its backward: the resolved options, the shape, and
 * the backend's saved buffers (`invNorm`, `probs`, `mean`, `rstd`, ...).
 */
import type { BackendImpl, SavedState } from './plan.ts';
import { ContraNormError } from './errors.ts';
import type { Plan } from './plan.ts';
import type { Shape } from './types.ts';

const SAVED_BRAND = Symbol.for('contranorm.ContraNormSaved');

/**
 * What `contraNorm` keeps for `contraNormBackward`. It may be passed to several backward
 * calls. On CUDA it holds device memory until `dispose()` (or, as a safety net only, until it
 * is garbage-collected).
 */
export class ContraNormSaved {
  /** True for a context of this package, from its ESM or its CommonJS copy alike. */
  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && SAVED_BRAND in value;
  }

  /** `[B, N, D]` of the forward call. */
  readonly shape: Shape;
  /** The backend that ran the forward call, and will run the backward. */
  readonly backend: 'cpu' | 'cuda';
  #impl: BackendImpl;
  #plan: Plan;
  #state: SavedState | null;

  /** @internal Made by the forward call only. */
  constructor(impl: BackendImpl, plan: Plan, state: SavedState) {
    this.shape = Object.freeze([plan.B, plan.N, plan.D] as const);
    this.backend = impl.name;
    this.#impl = impl;
    this.#plan = plan;
    this.#state = state;
    Object.defineProperty(this, SAVED_BRAND, { value: true });
  }

  /** True after `dispose()`. */
  get disposed(): boolean {
    return this.#state === null;
  }

  /** Frees the saved buffers now. A backward call after this throws. */
  dispose(): void {
    const state = this.#state;
    this.#state = null;
    state?.release();
  }

  /** @internal The pieces a backward call needs; throws once disposed. */
  unpack(): { impl: BackendImpl; plan: Plan; state: SavedState } {
    if (this.#state === null) {
      throw new ContraNormError(
        'ERR_CONTRANORM_DISPOSED',
        'saved: this context was disposed; run the forward call again',
      );
    }
    return { impl: this.#impl, plan: this.#plan, state: this.#state };
  }
}
