/**
 * Checks of caller buffers shared by the API and DeviceTensor: a live Float32Array of the right
 * length, and output views that must not overlap inputs.
 */
import { Phrase, rangeError, typeError } from './errors.ts';

/** True when the buffer behind a view can no longer be read (transferred or detached). */
export function isDetached(view: ArrayBufferView): boolean {
  const buffer = view.buffer;
  if (typeof SharedArrayBuffer !== 'undefined' && buffer instanceof SharedArrayBuffer) return false;
  if (buffer.byteLength > 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/** Checks that `value` is a readable `Float32Array` of `length` elements. */
export function checkFloat32(name: string, value: unknown, length?: number): Float32Array {
  if (!(value instanceof Float32Array)) throw typeError(name, 'a Float32Array', value);
  if (isDetached(value))
    throw typeError(name, 'a Float32Array over a live buffer', new Phrase('a detached buffer'));
  if (length !== undefined && value.length !== length) {
    throw rangeError(name, `length ${length}`, value, 'ERR_CONTRANORM_SHAPE');
  }
  return value;
}

/** Ranges of two views, to refuse an output buffer that overlaps an input. */
export function overlaps(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
