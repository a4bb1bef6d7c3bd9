#!/usr/bin/env node
/**
 * Lists the node_modules folders the GPU check needs (the test runner, tsx, the native loader and
 * the Node-API headers, the test helpers' dependencies) with everything they depend on, one path
 * per line relative to the package root, for `tar -T`. Only installed packages are listed;
 * optional dependencies that are not installed (other platforms' binaries) are left out.
 *
 *   node bench/gpu/modules.mjs > list.txt
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ROOTS = [
  'vitest',
  'tsx',
  'node-gyp-build',
  'node-addon-api',
  'node-api-headers',
  'pure-rand',
];

/** The folder of package `name` as Node resolves it from the package folder `from`. */
function locate(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dirname(dir) === dir) return null;
  }
}

const seen = new Set();
const queue = ROOTS.map((name) => {
  const dir = locate(name, root);
  if (dir === null) throw new Error(`${name} is not installed: run npm ci`);
  return dir;
});
while (queue.length > 0) {
  const dir = queue.pop();
  if (seen.has(dir)) continue;
  seen.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const deps = { ...pkg.dependencies, ...pkg.optionalDependencies };
  for (const name of Object.keys(deps)) {
    const found = locate(name, dir);
    if (found !== null) queue.push(found);
  }
}
for (const dir of [...seen].sort()) console.log(relative(root, dir));
