/**
 * The Cora citation graph in the plain-array format of its data folder (see the README there):
 * CSR bag-of-words features, an undirected edge list and labels, all little-endian. Here it
 * becomes what the demo propagates: the symmetric-normalized adjacency with self-loops, and
 * node features reduced to a few dimensions by a fixed, seeded random projection.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';

/** The graph as stored: CSR features, edges `(a, b)` with `a < b`, and labels. */
export interface CoraGraph {
  nodes: number;
  features: number;
  /** CSR row pointers of the feature matrix, length nodes + 1. */
  featIndptr: Uint32Array;
  /** CSR column (word) indices. */
  featIndices: Uint32Array;
  /** CSR values. */
  featData: Float32Array;
  /** Undirected edges, `[E, 2]` row-major. */
  edges: Uint32Array;
  labels: Uint8Array;
}

/** A sparse `[rows, rows]` matrix in CSR form. */
export interface Csr {
  rows: number;
  indptr: Uint32Array;
  indices: Uint32Array;
  values: Float32Array;
}

/** Where the data folder sits when the checkout has one: `../shared/data/cora` of the repo. */
export function defaultCoraDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, '..', '..', '..', 'shared', 'data', 'cora');
}

/** True when `dir` holds the files `loadCora` reads. */
export function hasCora(dir: string): boolean {
  return ['meta.json', 'edges.u32', 'features.indptr.u32'].every((f) => existsSync(join(dir, f)));
}

function readU32(path: string): Uint32Array {
  const bytes = readFileSync(path);
  if (bytes.byteLength % 4 !== 0) throw new RangeError(`${path}: size is not a multiple of 4`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(bytes.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint32(4 * i, true);
  return out;
}

function readF32(path: string): Float32Array {
  const words = readU32(path);
  return new Float32Array(words.buffer);
}

/**
 * Reads the Cora folder and checks it against its `meta.json` (nodes, features, nonzeros,
 * edges), throwing a RangeError that names the file on any mismatch.
 */
export function loadCora(dir: string): CoraGraph {
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as {
    nodes: number;
    features: number;
    featureNonzeros: number;
    undirectedEdges: number;
  };
  const featIndptr = readU32(join(dir, 'features.indptr.u32'));
  const featIndices = readU32(join(dir, 'features.indices.u32'));
  const featData = readF32(join(dir, 'features.data.f32'));
  const edges = readU32(join(dir, 'edges.u32'));
  const labels = new Uint8Array(readFileSync(join(dir, 'labels.u8')));

  // check
  const expect = (file: string, what: string, got: number, want: number) => {
    if (got !== want) throw new RangeError(`cora ${file}: expected ${what} ${want}, got ${got}`);
  };
  expect('features.indptr.u32', 'length', featIndptr.length, meta.nodes + 1);
  expect('features.indices.u32', 'length', featIndices.length, meta.featureNonzeros);
  expect('features.data.f32', 'length', featData.length, meta.featureNonzeros);
  expect('features.indptr.u32', 'last pointer', featIndptr[meta.nodes], meta.featureNonzeros);
  expect('edges.u32', 'length', edges.length, 2 * meta.undirectedEdges);
  expect('labels.u8', 'length', labels.length, meta.nodes);
  for (let i = 0; i < edges.length; i++) {
    if (edges[i] >= meta.nodes) throw new RangeError(`cora edges.u32: node id ${edges[i]}`);
  }
  for (let i = 0; i < featIndices.length; i++) {
    if (featIndices[i] >= meta.features) throw new RangeError(`cora features: word ${i}`);
  }
  return {
    nodes: meta.nodes,
    features: meta.features,
    featIndptr,
    featIndices,
    featData,
    edges,
    labels,
  };
}

/**
 * `D^-1/2 (A + I) D^-1/2` in CSR, with `A` the symmetric adjacency and `D` the degrees of
 * `A + I` (so every node keeps itself as a neighbour and no degree is 0).
 */
export function normalizedAdjacency(graph: CoraGraph): Csr {
  const n = graph.nodes;
  const E = graph.edges.length / 2;

  // degrees of A + I
  const degree = new Uint32Array(n).fill(1);
  for (let e = 0; e < E; e++) {
    degree[graph.edges[2 * e]]++;
    degree[graph.edges[2 * e + 1]]++;
  }

  // row pointers, then the self-loop first in each row and the neighbours after it
  const indptr = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) indptr[i + 1] = indptr[i] + degree[i];
  const indices = new Uint32Array(indptr[n]);
  const fill = indptr.slice(0, n);
  for (let i = 0; i < n; i++) indices[fill[i]++] = i;
  for (let e = 0; e < E; e++) {
    const a = graph.edges[2 * e];
    const b = graph.edges[2 * e + 1];
    indices[fill[a]++] = b;
    indices[fill[b]++] = a;
  }

  // values 1 / sqrt(d_i d_j)
  const values = new Float32Array(indptr[n]);
  for (let i = 0; i < n; i++) {
    for (let k = indptr[i]; k < indptr[i + 1]; k++) {
      values[k] = 1 / Math.sqrt(degree[i] * degree[indices[k]]);
    }
  }
  return { rows: n, indptr, indices, values };
}

/**
 * Node features `[nodes, dim]`: each bag-of-words row divided by its sum (the usual GCN
 * preprocessing), times a fixed Gaussian matrix `R` `[features, dim]` with entries drawn from
 * N(0, 1/dim) by xoroshiro128+ seeded with `seed` (Box-Muller), so every run sees the same
 * features. A random projection keeps pairwise angles approximately (Johnson-Lindenstrauss).
 */
export function projectFeatures(graph: CoraGraph, dim: number, seed: number): Float32Array {
  const { nodes, features, featIndptr, featIndices, featData } = graph;

  // projection matrix
  const rng = xoroshiro128plus(seed);
  const R = new Float64Array(features * dim);
  const sigma = 1 / Math.sqrt(dim);
  for (let i = 0; i < R.length; i += 2) {
    const u = 1 - uniformFloat64(rng);
    const v = uniformFloat64(rng);
    const radius = Math.sqrt(-2 * Math.log(u)) * sigma;
    R[i] = radius * Math.cos(2 * Math.PI * v);
    if (i + 1 < R.length) R[i + 1] = radius * Math.sin(2 * Math.PI * v);
  }

  // row-normalized sparse rows times R
  const x = new Float32Array(nodes * dim);
  const row = new Float64Array(dim);
  for (let i = 0; i < nodes; i++) {
    let sum = 0;
    for (let k = featIndptr[i]; k < featIndptr[i + 1]; k++) sum += featData[k];
    if (sum === 0) continue;
    row.fill(0);
    for (let k = featIndptr[i]; k < featIndptr[i + 1]; k++) {
      const w = featData[k] / sum;
      const r = featIndices[k] * dim;
      for (let c = 0; c < dim; c++) row[c] += w * R[r + c];
    }
    for (let c = 0; c < dim; c++) x[i * dim + c] = row[c];
  }
  return x;
}
