#!/usr/bin/env node
/**
 * `npx contranorm-build`: builds the native CUDA module of an installed contranorm from source,
 * for a platform without a prebuilt binary or a CUDA setup the prebuild does not fit. It runs
 * native/build.mjs (cmake-js) in the package folder; the module lands in build/Release, where
 * the package finds it before any prebuild. Then it loads the module and says whether CUDA runs.
 *
 * Needs: the CUDA toolkit (nvcc), CMake, a C++ compiler, and the build tools cmake-js and
 * node-addon-api installed in the project (`npm install --save-dev cmake-js node-addon-api`).
 * Exits 0 when a module was built and loads, 1 otherwise, with one line saying why.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

function fail(why) {
  console.error(`contranorm-build: ${why}`);
  process.exit(1);
}

const missing = ['cmake-js', 'node-addon-api'].filter((name) => {
  try {
    require.resolve(`${name}/package.json`);
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0) {
  fail(
    `a source build needs ${missing.join(' and ')}: ` +
      `npm install --save-dev ${missing.join(' ')}, then npx contranorm-build again`,
  );
}

const module = join(root, 'build', 'Release', 'contranorm.node');
const build = spawnSync(process.execPath, [join(root, 'native', 'build.mjs')], {
  cwd: root,
  stdio: 'inherit',
});
if (build.status !== 0) fail(`the build failed (exit ${build.status ?? build.signal})`);
// native/build.mjs exits 0 when it skips (no nvcc, no cmake), having printed why
if (!existsSync(module)) fail('no module was built; the package keeps its TypeScript path');

let probe;
try {
  probe = require(module).probe();
} catch (err) {
  fail(`the module was built but does not load: ${String(err).split('\n')[0]}`);
}
if (probe.ok) {
  console.log(`contranorm-build: ${module} loads; CUDA runs on ${probe.device}`);
} else {
  console.log(`contranorm-build: ${module} loads; CUDA cannot run here: ${probe.reason}`);
}
