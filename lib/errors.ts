/**
 * Errors with a stable `code`. Argument errors are plain `TypeError` and `RangeError` with a
 * code attached; failures of the native module are `ContraNormError`.
 */

export type ErrorCode =
  | 'ERR_CONTRANORM_ARG_TYPE'
  | 'ERR_CONTRANORM_SHAPE'
  | 'ERR_CONTRANORM_ARG_VALUE'
  | 'ERR_CONTRANORM_DISPOSED'
  | 'ERR_CONTRANORM_BUSY'
  | 'ERR_CONTRANORM_BACKEND_UNAVAILABLE'
  | 'ERR_CONTRANORM_CUDA'
  | 'ERR_CONTRANORM_CUBLAS'
  | 'ERR_CONTRANORM_OUT_OF_MEMORY'
  | 'ERR_CONTRANORM_NATIVE';

const ERROR_BRAND = Symbol.for('contranorm.ContraNormError');

/**
 * A failure outside argument checking: a missing backend, a CUDA or cuBLAS status. `instanceof`
 * holds across the package's ESM and CommonJS copies in one process.
 */
export class ContraNormError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ContraNormError';
    this.code = code;
    Object.defineProperty(this, ERROR_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && ERROR_BRAND in value;
  }
}

/** Words that stand for what was received, printed as they are rather than quoted. */
export class Phrase {
  constructor(readonly text: string) {}
}

/** `TypeError` for an option name the call does not know, listing the names it does. */
export function unknownOption(name: string, known: Iterable<string>): TypeError {
  const names = [...known].join(', ');
  return typeError(name, `one of the known options (${names})`, new Phrase('an unknown option'));
}

/** `TypeError` whose message names the argument, with what was expected and received. */
export function typeError(name: string, expected: string, received: unknown): TypeError {
  const err = new TypeError(`${name}: expected ${expected}, received ${describe(received)}`);
  return withCode(err, 'ERR_CONTRANORM_ARG_TYPE');
}

/** `RangeError` for a value of the right type but out of range or of the wrong size. */
export function rangeError(
  name: string,
  expected: string,
  received: unknown,
  code: ErrorCode = 'ERR_CONTRANORM_ARG_VALUE',
): RangeError {
  const err = new RangeError(`${name}: expected ${expected}, received ${describe(received)}`);
  return withCode(err, code);
}

function withCode<E extends Error>(err: E, code: ErrorCode): E & { code: ErrorCode } {
  return Object.assign(err, { code });
}

/** A short description of a value for error messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (value instanceof Phrase) return value.text;
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (ArrayBuffer.isView(value)) {
    const n = (value as { length?: number }).length ?? value.byteLength;
    return `${value.constructor.name} of length ${n}`;
  }
  if (Array.isArray(value)) return `Array of length ${value.length}`;
  if (typeof value === 'function') return 'function';
  return (value as object).constructor?.name ?? 'object';
}
