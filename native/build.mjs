#!/usr/bin/env node
/**
 * Builds the native CUDA module with cmake-js into build/Release/contranorm.node, or says in one
 * line why it is skipped (no nvcc, no cmake, CONTRANORM_SKIP_NATIVE set) and exits 0: without the
 * module the package runs on its TypeScript path.
 *
 *   node native/build.mjs                       # what `npm run build:native` runs
 *   node native/build.mjs --out DIR --copy-to DIR2
 *
 * Environment: CUDACXX (the nvcc to use), CONTRANORM_CUDA_ARCHITECTURES (a CMake list, such as
 * "90-real" for a quick build), CONTRANORM_BUILD_JOBS (parallel jobs; default: the cores).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: { out: { type: 'string' }, 'copy-to': { type: 'string' } },
});
const out = resolve(args.out ?? join(root, 'build'));

/** `name` as a file in a folder of PATH, or null. */
function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir, name);
    if (dir !== '' && existsSync(file) && statSync(file).isFile()) return file;
  }
  return null;
}

function findNvcc() {
  const candidates = [process.env.CUDACXX, onPath('nvcc')];
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) {
    if (home) candidates.push(join(home, 'bin', 'nvcc'));
  }
  return candidates.find((file) => file && existsSync(file)) ?? null;
}

function skip(why) {
  console.log(
    `contranorm: native CUDA module skipped (${why}); the package runs on its TypeScript path`,
  );
  process.exit(0);
}

if (process.env.CONTRANORM_SKIP_NATIVE) skip('CONTRANORM_SKIP_NATIVE is set');
const nvcc = findNvcc();
if (nvcc === null) skip('nvcc not found: set CUDACXX or put the CUDA toolkit on PATH');
if (onPath('cmake') === null) skip('cmake not found on PATH');

// build
const require = createRequire(import.meta.url);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const jobs = Number(process.env.CONTRANORM_BUILD_JOBS) || os.availableParallelism();
const cmakeArgs = [`--CDCMAKE_CUDA_COMPILER=${nvcc}`];
if (process.env.CONTRANORM_CUDA_ARCHITECTURES) {
  cmakeArgs.push(`--CDCONTRANORM_CUDA_ARCHITECTURES=${process.env.CONTRANORM_CUDA_ARCHITECTURES}`);
}
const started = Date.now();
const run = spawnSync(
  process.execPath,
  [
    cmakeJs,
    'compile',
    '--directory',
    root,
    '--out',
    out,
    '--parallel',
    String(jobs),
    '--log-level',
    'warn',
    ...cmakeArgs,
  ],
  { stdio: 'inherit' },
);
if (run.status !== 0) {
  console.error(
    `contranorm: the native build failed (cmake-js exited with ${run.status ?? run.signal})`,
  );
  process.exit(1);
}
const module = join(out, 'Release', 'contranorm.node');
if (args['copy-to']) {
  mkdirSync(args['copy-to'], { recursive: true });
  copyFileSync(module, join(args['copy-to'], 'contranorm.node'));
}
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log(`contranorm: built ${module} in ${seconds} s with ${nvcc}`);
