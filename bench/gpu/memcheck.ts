/**
 * Small shapes through every kernel of the CUDA path, forward and backward, on host and device
 * memory, sync and async: what `compute-sanitizer --tool memcheck` watches in the GPU check.
 * Prints one JSON line per case and exits non-zero if any result is not finite.
 *
 *   compute-sanitizer --tool memcheck node --import tsx bench/gpu/memcheck.ts
 */
import {
  backendInfo,
  contraNorm,
  contraNormAsync,
  contraNormBackward,
  contraNormBackwardAsync,
  DeviceTensor,
} from '../../lib/index.ts';
import type { ContraNormOptions } from '../../lib/index.ts';
import { fill } from '../inputs.ts';

/** A mask excluding about a third of the entries, row 0 and the last column entirely. */
function mask(count: number, M: number, seed: number): Uint8Array {
  const m = Uint8Array.from(fill(count * M * M, seed), (v) => (v < -1 / 3 ? 1 : 0));
  for (let b = 0; b < count; b++) {
    for (let j = 0; j < M; j++) m[b * M * M + j] = 1;
    for (let i = 0; i < M; i++) m[b * M * M + i * M + M - 1] = 1;
  }
  return m;
}

const every = (D: number, B: number, M: number): ContraNormOptions => ({
  scale: fill(D, 3).map((v) => 0.2 + 0.1 * v),
  scaleParam: 'exp',
  identity: true,
  dualNorm: true,
  preNorm: true,
  temperature: 0.7,
  layerNorm: { weight: fill(D, 4), bias: fill(D, 5) },
  mask: mask(B, M, 6),
});

const cases: { name: string; shape: [number, number, number]; o: ContraNormOptions }[] = [
  { name: 'tokens, warp rows', shape: [2, 40, 8], o: {} },
  { name: 'tokens, every option', shape: [2, 40, 8], o: { ...every(8, 2, 40), lengths: [40, 17] } },
  {
    name: 'tokens, block rows on chip',
    shape: [1, 1100, 4],
    o: { dualNorm: true, lengths: [1000] },
  },
  { name: 'tokens, block rows read twice', shape: [1, 4200, 2], o: { dualNorm: true } },
  {
    name: 'features, every option',
    shape: [2, 6, 40],
    o: { ...every(40, 2, 40), mode: 'features', lengths: [6, 2] },
  },
  { name: 'one row, one channel', shape: [3, 1, 1], o: { layerNorm: false } },
];

const finite = (a: Float32Array) => a.every((v) => Number.isFinite(v));
let bad = 0;
console.log(JSON.stringify({ backend: backendInfo() }));
for (const { name, shape, o } of cases) {
  const n = shape[0] * shape[1] * shape[2];
  const x = fill(n, 1);
  const dy = fill(n, 2);
  const { y, saved } = contraNorm(x, shape, { ...o, backend: 'cuda' });
  const g = contraNormBackward(dy, saved!);
  saved!.dispose();
  const ok = finite(y) && finite(g.dx) && finite(g.dScale);
  if (!ok) bad++;
  console.log(JSON.stringify({ case: name, shape, finite: ok }));
}

// device memory and the Promise forms, once
const shape: [number, number, number] = [2, 40, 8];
const x = DeviceTensor.upload(fill(640, 7), shape);
const dy = DeviceTensor.upload(fill(640, 8), shape);
const { y, saved } = await contraNormAsync(x, shape, { dualNorm: true });
const g = await contraNormBackwardAsync(dy, saved!);
const ok = finite(y.download()) && finite(g.dx.download());
if (!ok) bad++;
console.log(JSON.stringify({ case: 'device tensors, async', shape, finite: ok }));
for (const t of [x, dy, y, g.dx]) t.dispose();
saved!.dispose();
process.exitCode = bad === 0 ? 0 : 1;
