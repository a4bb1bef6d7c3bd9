/**
 * Oversmoothing demo: deep stacks of smoothing steps collapse token and node representations
 * into one direction; ContraNorm after every step keeps them apart. Runs on real data only:
 * MNIST digits cut into patch tokens through weightless attention smoothing, and (when its data
 * folder is there) the Cora citation graph through normalized-adjacency propagation.
 *
 *   npx tsx examples/oversmoothing/main.ts [--images 128] [--rounds 32] [--scale 0.5]
 *     [--cora DIR] [--cora-dim 64] [--reps 5] [--out DIR]
 *
 * Prints one table per dataset and writes the same numbers as an SVG figure.
 */
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { backendInfo } from '../../lib/index.ts';
import type { ContraNormOptions } from '../../lib/index.ts';
import { defaultCoraDir, hasCora, loadCora, normalizedAdjacency, projectFeatures } from './cora.ts';
import { runDataset } from './experiment.ts';
import type { DatasetResult } from './experiment.ts';
import { loadMnistPatches } from './mnist.ts';
import { writePlot } from './plot.ts';
import type { PlotPanel } from './plot.ts';
import { Progress } from './progress.ts';
import { attentionSmooth, propagate } from './smoothing.ts';

const HELP = `Usage: npm run demo -- [options]

  --images N     MNIST images in the batch (default 128)
  --rounds R     smoothing rounds; tables show depths 0, 1, 2, 4, ..., R (default 32)
  --scale S      ContraNorm scale s (default 0.5)
  --cora DIR     Cora data folder (default ../shared/data/cora beside the checkout, if present)
  --cora-dim K   dimensions of the random projection of Cora's features (default 64)
  --reps N       timed ContraNorm calls per dataset, median reported (default 5; Cora: 3)
  --out DIR      where the SVG goes (default examples/out)
  --help         this text`;

const CORA_SEED = 1;
const TIMING_DEPTH = 8;
const progress = new Progress();

function intArg(name: string, value: string | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new RangeError(`--${name}: expected an integer >= ${min}, received ${value}`);
  }
  return n;
}

function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === '' ? '.' : rel;
}

function fmtMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

function timingLine(result: DatasetResult): string {
  const { shape, timing } = result;
  return (
    `ContraNorm [${shape.join(', ')}] on ${timing.backend}: forward ${fmtMs(timing.forwardMs)} ms, ` +
    `backward ${fmtMs(timing.backwardMs)} ms (median of ${timing.reps} call${timing.reps === 1 ? '' : 's'} on the input of ` +
    `round ${timing.depth})`
  );
}

function printTable(result: DatasetResult): void {
  const head = ['depth', 'cos plain', 'cos +CN', 'erank plain', 'erank +CN'];
  const widths = [5, 10, 10, 12, 12];
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  console.log(line(head));
  for (const row of result.rows) {
    console.log(
      line([
        String(row.depth),
        row.cosPlain.toFixed(4),
        row.cosContra.toFixed(4),
        row.erankPlain.toFixed(3),
        row.erankContra.toFixed(3),
      ]),
    );
  }
  console.log(timingLine(result));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      images: { type: 'string' },
      rounds: { type: 'string' },
      scale: { type: 'string' },
      cora: { type: 'string' },
      'cora-dim': { type: 'string' },
      reps: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const images = intArg('images', values.images, 128, 2);
  const rounds = intArg('rounds', values.rounds, 32, 1);
  const coraDim = intArg('cora-dim', values['cora-dim'], 64, 2);
  const reps = values.reps === undefined ? null : intArg('reps', values.reps, 5, 1);
  const scale = values.scale === undefined ? 0.5 : Number(values.scale);
  if (!Number.isFinite(scale))
    throw new RangeError(`--scale: expected a number, received ${values.scale}`);
  const here = dirname(fileURLToPath(import.meta.url));
  const outDir = values.out === undefined ? resolve(here, '..', 'out') : resolve(values.out);
  const timingDepth = Math.min(TIMING_DEPTH, rounds);
  const coraDir = values.cora === undefined ? defaultCoraDir() : resolve(values.cora);
  const coraFound = hasCora(coraDir);
  if (!coraFound && values.cora !== undefined) {
    throw new Error(`--cora ${values.cora}: no Cora data there (meta.json, edges.u32, ...)`);
  }

  // settings
  const info = backendInfo();
  const options: ContraNormOptions = { scale, temperature: 1 };
  const settings = `scale ${scale}, temperature 1, tokens mode, LayerNorm on (no affine, eps 1e-6)`;
  console.log('Oversmoothing with and without ContraNorm');
  const forced = process.env.CONTRANORM_BACKEND;
  console.log(
    `backend: ${info.backend}${info.device ? ` (${info.device})` : ''}` +
      `${info.reason ? ` (${info.reason})` : ''}` +
      `${forced ? `; CONTRANORM_BACKEND=${forced} chooses for each call` : ''}`,
  );
  console.log(`ContraNorm after every round: ${settings}; other options at their defaults`);
  console.log(
    'cos = mean pairwise cosine similarity; erank = effective rank; +CN = with ContraNorm',
  );
  const panels: PlotPanel[] = [];

  // mnist
  const mnist = loadMnistPatches(images);
  const mnistShape = [mnist.B, mnist.N, mnist.D] as const;
  console.log('');
  console.log(
    `MNIST: ${mnist.B} digits as ${mnist.N} patch tokens of 7x7 = ${mnist.D} standardized ` +
      `pixels, [${mnistShape.join(', ')}]; round: x <- softmax(x x^T / sqrt(D)) x per image`,
  );
  const mnistResult = runDataset({
    name: 'mnist',
    x: mnist.x,
    shape: mnistShape,
    step: (x) => attentionSmooth(x, mnist.B, mnist.N, mnist.D),
    rounds,
    options,
    timingDepth,
    reps: reps ?? 5,
    progress,
  });
  printTable(mnistResult);
  panels.push({
    result: mnistResult,
    title: `MNIST patch tokens [${mnistShape.join(', ')}], attention smoothing`,
    subtitle: timingLine(mnistResult),
  });

  // cora
  console.log('');
  if (!coraFound) {
    console.log(
      `Cora: skipped, no data at ${shown(coraDir)}; pass --cora DIR to point at a folder in ` +
        'its format (CSR features, edge list, labels, meta.json)',
    );
  } else {
    const graph = loadCora(coraDir);
    const adjacency = normalizedAdjacency(graph);
    const x = projectFeatures(graph, coraDim, CORA_SEED);
    const coraShape = [1, graph.nodes, coraDim] as const;
    console.log(
      `Cora: ${graph.nodes} nodes, ${graph.edges.length / 2} edges; features: ${graph.features}-word ` +
        `bag-of-words, each row divided by its sum, times a fixed Gaussian N(0, 1/${coraDim}) ` +
        `projection (xoroshiro128+, seed ${CORA_SEED}) to ${coraDim} dims, ` +
        `[${coraShape.join(', ')}]; round: x <- D^-1/2 (A + I) D^-1/2 x`,
    );
    const coraResult = runDataset({
      name: 'cora',
      x,
      shape: coraShape,
      step: (v) => propagate(adjacency, v, coraDim),
      rounds,
      options,
      timingDepth,
      reps: reps ?? 3,
      progress,
    });
    printTable(coraResult);
    panels.push({
      result: coraResult,
      title: `Cora nodes [${coraShape.join(', ')}], normalized-adjacency propagation`,
      subtitle: timingLine(coraResult),
    });
  }

  // plot
  const heading = {
    text: 'Oversmoothing with and without ContraNorm',
    subtitle: `ContraNorm after every round: ${settings}; backend ${mnistResult.timing.backend}`,
  };
  const path = await writePlot(panels, heading, outDir);
  console.log('');
  console.log(`figure: ${shown(path)}`);
}

main().catch((error: unknown) => {
  progress.clear();
  console.error(error instanceof Error ? `error: ${error.message}` : error);
  process.exitCode = 1;
});
