/**
 * CPU throughput of the TypeScript path against the same composite in tfjs (tfjs-core with
 * the CPU backend, gradients through tf.grads), in one run on one machine.
 *
 *   npm run bench:cpu                     # the table of bench/RESULTS.md
 *   npm run bench:cpu -- --reps 30 --json bench/out/cpu.json
 *
 * FLOP counts are the nominal products: forward 4*B*N^2*D (S and P V), backward 6*B*N^2*D
 * (P^T dxneg, dxneg V^T, G xn); the softmax, norms and LayerNorm are not counted.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';

import * as tf from '@tensorflow/tfjs';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { ContraNormOptions } from '../lib/index.ts';
import { fill } from './inputs.ts';

const { values: args } = parseArgs({
  options: {
    reps: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    json: { type: 'string' },
  },
});
const reps = Number(args.reps);
const warmup = Number(args.warmup);
const shapes: [number, number, number][] = [
  [8, 128, 64],
  [2, 512, 256],
];
const scale = 0.1;
const temperature = 1;
const lnEps = 1e-6;

function median(times: number[]): number {
  const t = [...times].sort((a, b) => a - b);
  const mid = t.length >> 1;
  return t.length % 2 ? t[mid] : (t[mid - 1] + t[mid]) / 2;
}

function time(fn: () => void): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** The layer written as tfjs ops: y = LayerNorm(x - s * softmax(xn xn^T / tau) x). */
function tfForward(x: tf.Tensor3D, s: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Tensor3D {
  const norm = tf.maximum(tf.norm(x, 'euclidean', -1, true), 1e-12);
  const xn = tf.div(x, norm);
  const sim = tf.div(tf.matMul(xn, xn, false, true), temperature);
  const probs = tf.softmax(sim, -1);
  const z = tf.sub(x, tf.mul(s, tf.matMul(probs, x)));
  const mean = tf.mean(z, -1, true);
  const centered = tf.sub(z, mean);
  const variance = tf.mean(tf.square(centered), -1, true);
  const zhat = tf.div(centered, tf.sqrt(tf.add(variance, lnEps)));
  return tf.add(tf.mul(zhat, w), b) as tf.Tensor3D;
}

/** A fixed ceiling for scalar JavaScript arithmetic: dot products on L1-resident rows. */
function scalarCeiling(): number {
  const k = 256;
  const rows = 16;
  const a = fill(rows * k, 1);
  let sink = 0;
  const run = () => {
    for (let r = 0; r < 2000; r++) {
      for (let i = 0; i < rows; i += 4) {
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let p = 0; p < k; p++) {
          const v = a[p];
          s0 += v * a[i * k + p];
          s1 += v * a[(i + 1) * k + p];
          s2 += v * a[(i + 2) * k + p];
          s3 += v * a[(i + 3) * k + p];
        }
        sink += s0 + s1 + s2 + s3;
      }
    }
  };
  const ms = time(run);
  if (sink === 42) console.log('');
  return (2 * 2000 * rows * k) / (ms * 1e6);
}

await tf.setBackend('cpu');
await tf.ready();

const ceiling = scalarCeiling();
console.log(
  `contranorm CPU benchmark: node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ` +
    `tfjs ${tf.version.tfjs} (${tf.getBackend()}), median of ${reps} after ${warmup} warm-up`,
);
console.log(`scalar JS ceiling (L1 dot products): ${ceiling.toFixed(2)} GFLOP/s`);
console.log('');
const header = [
  'B',
  'N',
  'D',
  'pass',
  'ours ms',
  'GFLOP/s',
  '% ceiling',
  'tfjs ms',
  'tfjs GFLOP/s',
  'speedup',
];
console.log(header.map((h) => h.padStart(13)).join(''));

const rows: Record<string, unknown>[] = [];
for (const [B, N, D] of shapes) {
  const x = fill(B * N * D, 7);
  const dy = fill(B * N * D, 11);
  const weight = fill(D, 13).map((v) => 1 + 0.1 * v);
  const bias = fill(D, 17).map((v) => 0.1 * v);
  const options: ContraNormOptions = {
    backend: 'cpu',
    scale,
    temperature,
    layerNorm: { weight, bias, eps: lnEps },
  };

  // ours
  const fwd = time(() => {
    contraNorm(x, [B, N, D], { ...options, saveForBackward: false });
  });
  const both = time(() => {
    const { saved } = contraNorm(x, [B, N, D], options);
    contraNormBackward(dy, saved!);
  });

  // tfjs
  const tx = tf.tensor3d(x, [B, N, D]);
  const tdy = tf.tensor3d(dy, [B, N, D]);
  const ts = tf.scalar(scale);
  const tw = tf.tensor1d(weight);
  const tb = tf.tensor1d(bias);
  const gradFn = tf.grads((a, s, w, b) =>
    tfForward(a as tf.Tensor3D, s as tf.Tensor, w as tf.Tensor, b as tf.Tensor),
  );
  const tfFwd = time(() => {
    tf.tidy(() => tfForward(tx, ts, tw, tb).dataSync());
  });
  const tfBoth = time(() => {
    tf.tidy(() => {
      for (const g of gradFn([tx, ts, tw, tb], tdy)) g.dataSync();
    });
  });
  tf.dispose([tx, tdy, ts, tw, tb]);

  const flopsF = 4 * B * N * N * D;
  const flopsB = 10 * B * N * N * D;
  for (const [pass, ms, tfMs, flops] of [
    ['forward', fwd, tfFwd, flopsF],
    ['fwd+bwd', both, tfBoth, flopsB],
  ] as const) {
    const gflops = flops / (ms * 1e6);
    const row = {
      B,
      N,
      D,
      pass,
      oursMs: ms,
      gflops,
      ceilingFraction: gflops / ceiling,
      tfjsMs: tfMs,
      tfjsGflops: flops / (tfMs * 1e6),
      speedup: tfMs / ms,
    };
    rows.push(row);
    console.log(
      [
        B,
        N,
        D,
        pass,
        ms.toFixed(2),
        gflops.toFixed(2),
        (100 * row.ceilingFraction).toFixed(0) + '%',
        tfMs.toFixed(2),
        row.tfjsGflops.toFixed(2),
        row.speedup.toFixed(2) + 'x',
      ]
        .map((v) => String(v).padStart(13))
        .join(''),
    );
  }
}

if (args.json !== undefined) {
  mkdirSync(dirname(args.json), { recursive: true });
  const result = {
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    tfjs: tf.version.tfjs,
    reps,
    warmup,
    ceilingGflops: ceiling,
    rows,
  };
  writeFileSync(args.json, JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote ${args.json}`);
}
