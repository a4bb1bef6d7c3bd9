/**
 * The package as a user receives it: `npm pack` of this repository, installed from the tarball
 * into fresh projects three ways.
 *
 * 1. With the prebuild, install scripts ignored: the GPU-capable module still loads, and
 *    backendInfo() names what CUDA lacks here (driver, device, cuBLAS), not a missing module.
 * 2. With the prebuild, install scripts allowed: no compiler runs (stand-ins for nvcc, cmake,
 *    make, the C++ compilers and python log any call) and nothing is built in the package.
 * 3. Without the prebuild, no nvcc on PATH: the install succeeds, the TypeScript path runs, and
 *    the reason names the build command, which itself says what a source build needs.
 *
 * In each project require() and import both load the package, a TypeScript consumer type-checks
 * against the shipped declarations, and a forward and backward call give the repository's own
 * values. Setup rebuilds dist/ when it is older than lib/, and makes the prebuild
 * (prebuilds/linux-x64) when it is missing or older than native/, with `npm run prebuild` in the
 * unpacked tarball itself: that build also shows the tarball holds what a source build needs.
 * Where the prebuild cannot be made (not Linux x64, no nvcc, cmake, make or python) the cases
 * that need it skip with the reason in their name.
 */
import { spawnSync } from 'node:child_process';
import type { SpawnSyncOptions } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { contraNorm, contraNormBackward } from '../lib/index.ts';
import type { BackendInfo, ContraNormOptions, Shape } from '../lib/index.ts';
import { BUILD_COMMAND } from '../lib/native.ts';
import { expectClose } from './helpers.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
};
const platform = `${process.platform}-${process.arch}`;
const prebuildDir = join(root, 'prebuilds', 'linux-x64');
const MINUTE = 60_000;

// ---------------------------------------------------------------------------------------------
// processes

interface Ran {
  status: number | null;
  out: string;
}

/** Runs a command to completion; `out` is stdout and stderr together. */
function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20 * MINUTE, ...options });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`;
  return { status: r.status, out };
}

/** `run`, throwing an error with the command and the end of its output when it fails. */
function mustRun(cmd: string, args: string[], options: SpawnSyncOptions = {}): string {
  const r = run(cmd, args, options);
  if (r.status !== 0) {
    const tail = r.out.trimEnd().split('\n').slice(-40).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}:\n${tail}`);
  }
  return r.out;
}

/** npm settings that come from the parent `npm test` and should reach a child npm. */
const NPM_KEEP = new Set([
  'npm_config_cache',
  'npm_config_userconfig',
  'npm_config_globalconfig',
  'npm_config_registry',
  'npm_config_nodedir',
]);

/**
 * The environment of a child: the parent's, less what `npm test` and the test runner set for
 * themselves and less every contranorm setting, so each child sees what a user's shell has.
 */
function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('npm_') && !NPM_KEEP.has(key)) continue;
    if (key.startsWith('CONTRANORM_') || key.startsWith('VITEST') || key === 'NODE_ENV') continue;
    env[key] = value;
  }
  return { ...env, npm_config_update_notifier: 'false', npm_config_fund: 'false', ...extra };
}

/** `name` as an executable file in a folder of PATH, or null. */
function onPath(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    const file = join(dir, name);
    if (dir !== '' && existsSync(file) && statSync(file).isFile()) return file;
  }
  return null;
}

/** The nvcc native/build.mjs would use: CUDACXX, PATH, CUDA_HOME, CUDA_PATH, /usr/local/cuda. */
function findNvcc(): string | null {
  const candidates = [process.env.CUDACXX, onPath('nvcc')];
  for (const home of [process.env.CUDA_HOME, process.env.CUDA_PATH, '/usr/local/cuda']) {
    if (home) candidates.push(join(home, 'bin', 'nvcc'));
  }
  return (
    candidates.find((f): f is string => f !== undefined && f !== null && existsSync(f)) ?? null
  );
}

// ---------------------------------------------------------------------------------------------
// what is up to date

function filesUnder(dir: string, pattern: RegExp): string[] {
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => pattern.test(f))
    .map((f) => join(dir, f));
}

function newest(files: string[]): number {
  return Math.max(0, ...files.map((f) => statSync(f).mtimeMs));
}

/** What a source build reads: CMakeLists.txt and native/ (no emu/). */
function nativeInputs(): string[] {
  const sources = readdirSync(join(root, 'native'))
    .filter((f) => /\.(cc|cu|h|cuh|mjs)$/.test(f))
    .map((f) => join(root, 'native', f));
  return [join(root, 'CMakeLists.txt'), ...sources];
}

/** The prebuild's file, or null when there is none. */
function prebuildFile(): string | null {
  if (!existsSync(prebuildDir)) return null;
  const files = readdirSync(prebuildDir).filter((f) => f.endsWith('.node'));
  return files.length === 1 ? join(prebuildDir, files[0]) : null;
}

/** Why the prebuild must be made again, or null when it is current. */
function prebuildStale(): string | null {
  const file = prebuildFile();
  if (file === null) return 'there is none';
  if (statSync(file).mtimeMs < newest([...nativeInputs(), join(root, 'binding.gyp')])) {
    return 'it is older than native/';
  }
  const r = run(process.execPath, ['-p', `require(${JSON.stringify(file)}).version`]);
  const version = r.out.trim();
  if (r.status !== 0 || version !== pkg.version) {
    return `it is version ${version.split('\n')[0]}, the package ${pkg.version}`;
  }
  return null;
}

/** Why the prebuild cannot be made here, or null when it can. */
function cannotBuild(): string | null {
  if (platform !== 'linux-x64') return `prebuilds are made on linux-x64, this is ${platform}`;
  if (findNvcc() === null) return 'no nvcc';
  for (const tool of ['cmake', 'make', 'strip']) {
    if (onPath(tool) === null) return `no ${tool} on PATH`;
  }
  if (onPath('python3') === null && onPath('python') === null) return 'no python for node-gyp';
  return null;
}

const stale = platform === 'linux-x64' ? prebuildStale() : 'not linux-x64';
const blocker = stale === null ? null : cannotBuild();
/** The tarball will carry a current prebuild. */
const withPrebuild = blocker === null;
const prebuildNote = withPrebuild
  ? 'prebuild present'
  : `skipped: the prebuild is needed (${stale}) and cannot be made: ${blocker}`;
if (!withPrebuild) console.log(`packaging: cases with the prebuild ${prebuildNote}`);

// ---------------------------------------------------------------------------------------------
// the tarballs

interface Packed {
  file: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

function npmPack(dir: string, dest: string): Packed {
  mkdirSync(dest, { recursive: true });
  const r = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest], {
    cwd: dir,
    env: childEnv(),
    encoding: 'utf8',
    timeout: 5 * MINUTE,
  });
  if (r.status !== 0) throw new Error(`npm pack failed (${r.status}):\n${r.stderr}`);
  const [info] = JSON.parse(r.stdout) as [Packed & { filename: string }];
  return { ...info, file: join(dest, info.filename) };
}

/** Unpacks `tarball` into `dir`; the package is then in `dir/package`. */
function unpack(tarball: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  mustRun('tar', ['-xzf', tarball, '-C', dir]);
  return join(dir, 'package');
}

/** Makes the prebuild with `npm run prebuild` in the unpacked package; returns the new file. */
function makePrebuild(tmp: string): string {
  const started = Date.now();
  const source = unpack(npmPack(root, join(tmp, 'source')).file, join(tmp, 'source'));
  rmSync(join(source, 'prebuilds'), { recursive: true, force: true });
  // binding.gyp is the repository's entry for prebuildify, not shipped: a shipped one makes npm
  // list a `node-gyp rebuild` install script for the package
  copyFileSync(join(root, 'binding.gyp'), join(source, 'binding.gyp'));
  symlinkSync(join(root, 'node_modules'), join(source, 'node_modules'), 'dir');

  // node-gyp wants Node's headers even for this CMake-only target: use the running Node's
  const env = childEnv();
  const prefix = resolve(dirname(process.execPath), '..');
  if (!env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node.h'))) {
    env.npm_config_nodedir = prefix;
  }
  mustRun('npm', ['run', 'prebuild'], { cwd: source, env });

  const built = join(source, 'prebuilds', 'linux-x64');
  const files = existsSync(built) ? readdirSync(built).filter((f) => f.endsWith('.node')) : [];
  if (files.length !== 1) throw new Error(`npm run prebuild made ${files.join(', ') || 'nothing'}`);

  // into the repository: replace what was there, the file itself in one rename
  mkdirSync(prebuildDir, { recursive: true });
  for (const f of readdirSync(prebuildDir)) rmSync(join(prebuildDir, f), { force: true });
  const dest = join(prebuildDir, files[0]);
  copyFileSync(join(built, files[0]), `${dest}.tmp`);
  renameSync(`${dest}.tmp`, dest);
  const mb = (statSync(dest).size / 1e6).toFixed(1);
  const s = ((Date.now() - started) / 1000).toFixed(0);
  console.log(`packaging: prebuild made from the packed sources in ${s} s: ${dest} (${mb} MB)`);
  return dest;
}

/** Section names of an ELF64 file, from its section header table. */
function elfSections(file: string): string[] {
  const b = readFileSync(file);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return [];
  const shoff = Number(b.readBigUInt64LE(0x28));
  const [size, count, names] = [b.readUInt16LE(0x3a), b.readUInt16LE(0x3c), b.readUInt16LE(0x3e)];
  const strings = Number(b.readBigUInt64LE(shoff + names * size + 0x18));
  return Array.from({ length: count }, (_, i) => {
    const start = strings + b.readUInt32LE(shoff + i * size);
    return b.toString('latin1', start, b.indexOf(0, start));
  });
}

// ---------------------------------------------------------------------------------------------
// the consumer projects

/** A forward and backward call's inputs, the same in the repository and in every project. */
const shape: Shape = [2, 5, 8];
const options: ContraNormOptions = { scale: 0.3, temperature: 0.5, dualNorm: true, identity: true };
const count = shape[0] * shape[1] * shape[2];
const x = Float32Array.from({ length: count }, (_, i) => Math.sin(0.7 * i + 0.3) * (1 + (i % 3)));
const dy = Float32Array.from({ length: count }, (_, i) => Math.cos(1.3 * i) - 0.25);

/** The body both consumers share; `req` is a require function, `entry` the file loaded. */
const CONSUMER_BODY = `
const input = JSON.parse(readFileSync('input.json', 'utf8'));
const pkgFile = req.resolve('contranorm/package.json');
let native = null;
try {
  native = createRequire(pkgFile)('node-gyp-build').path(dirname(pkgFile));
} catch {}
const { y, saved } = contraNorm(Float32Array.from(input.x), input.shape, input.options);
const { dx, dScale } = contraNormBackward(Float32Array.from(input.dy), saved);
const result = { entry, info: backendInfo(), native };
Object.assign(result, { y: Array.from(y), dx: Array.from(dx), dScale: Array.from(dScale) });
writeFileSync(process.argv[2], JSON.stringify(result));
`;

const CONSUMER_CJS = `'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { dirname } = require('node:path');
const { backendInfo, contraNorm, contraNormBackward } = require('contranorm');
const req = require;
const entry = require.resolve('contranorm');
${CONSUMER_BODY}`;

const CONSUMER_ESM = `import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backendInfo, contraNorm, contraNormBackward } from 'contranorm';
const req = createRequire(import.meta.url);
const entry = fileURLToPath(import.meta.resolve('contranorm'));
${CONSUMER_BODY}`;

/** Type-checked, not run: the declarations must carry the API, and reject misuse. */
const CONSUMER_MTS = `import { backendInfo, ContraNorm, ContraNormError, contraNorm, contraNormBackward } from 'contranorm';
import type { BackendInfo, ContraNormGrads, ContraNormOptions } from 'contranorm';

const info: BackendInfo = backendInfo();
export const backend: 'cuda' | 'cpu' = info.backend;
export const reason: string | undefined = info.reason;
const options: ContraNormOptions = { scale: 0.1, dualNorm: true, backend: 'auto' };
const x = new Float32Array(2 * 3 * 4);
const { y, saved } = contraNorm(x, [2, 3, 4], options);
export const grads: ContraNormGrads = contraNormBackward(y, saved!);
export const names: string[] = new ContraNorm(4, { scale: 0.1 }).parameters().map((p) => p.name);
export const isError = (err: unknown): boolean => err instanceof ContraNormError;
// @ts-expect-error x is a Float32Array
contraNorm(new Float64Array(24), [2, 3, 4]);
// @ts-expect-error an unknown option is a type error
contraNorm(x, [2, 3, 4], { scael: 0.1 });
`;

const CONSUMER_CTS = `import contranorm = require('contranorm');

const info: contranorm.BackendInfo = contranorm.backendInfo();
export const backend: 'cuda' | 'cpu' = info.backend;
export const y: Float32Array = contranorm.contraNorm(new Float32Array(4), [1, 2, 2]).y;
`;

const TSCONFIG = {
  compilerOptions: {
    strict: true,
    target: 'ES2022',
    lib: ['ES2022'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    types: [],
    noEmit: true,
    skipLibCheck: false,
  },
  files: ['consumer.mts', 'consumer.cts'],
};

interface Consumed {
  entry: string;
  info: BackendInfo;
  native: string | null;
  y: number[];
  dx: number[];
  dScale: number[];
}

/** A fresh project holding the consumers and their input, nothing installed yet. */
function makeProject(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const manifest = { name: 'contranorm-consumer', version: '1.0.0', private: true };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
  const input = { shape, options, x: Array.from(x), dy: Array.from(dy) };
  writeFileSync(join(dir, 'input.json'), JSON.stringify(input));
  writeFileSync(join(dir, 'consumer.cjs'), CONSUMER_CJS);
  writeFileSync(join(dir, 'consumer.mjs'), CONSUMER_ESM);
  writeFileSync(join(dir, 'consumer.mts'), CONSUMER_MTS);
  writeFileSync(join(dir, 'consumer.cts'), CONSUMER_CTS);
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
  return dir;
}

/**
 * `npm install <tarball>` in `project`: from the npm cache alone where it holds the package's
 * dependencies, else from the registry.
 */
function npmInstall(project: string, tarball: string, flags: string[], env: NodeJS.ProcessEnv) {
  const args = ['install', '--no-audit', '--no-fund', ...flags, tarball];
  const offline = run('npm', [...args, '--offline'], { cwd: project, env, timeout: 10 * MINUTE });
  if (offline.status === 0 || !/ENOTCACHED/.test(offline.out)) return offline;
  console.log('packaging: a dependency is not in the npm cache; installing from the registry');
  return run('npm', [...args, '--prefer-offline'], { cwd: project, env, timeout: 10 * MINUTE });
}

/** Runs a consumer script in `project` and returns what it wrote. */
function consume(project: string, script: string, env: NodeJS.ProcessEnv): Consumed {
  const out = join(project, `${script}.json`);
  mustRun(process.execPath, [script, out], { cwd: project, env });
  return JSON.parse(readFileSync(out, 'utf8')) as Consumed;
}

const requireRoot = createRequire(join(root, 'package.json'));
const tsc = requireRoot.resolve('typescript/bin/tsc');

/** The repository's own forward and backward on `backend`. */
function ownValues(backend: 'cpu' | 'cuda') {
  const { y, saved } = contraNorm(x, shape, { ...options, backend });
  const { dx, dScale } = contraNormBackward(dy, saved!);
  return { y, dx, dScale };
}

/** The installed package's values against the repository's own, run on the same backend. */
function expectOwnValues(got: Consumed) {
  const want = ownValues(got.info.backend);
  // the CPU path: the same code on the same numbers, so the very same values (a JSON round trip
  // keeps every float32 but not the sign of a zero); CUDA: cuBLAS may pick other algorithms in
  // another process
  const tol = got.info.backend === 'cpu' ? { abs: 0, rel: 0 } : { abs: 2e-5, rel: 2e-4 };
  expectClose(got.y, want.y, tol, 'y');
  expectClose(got.dx, want.dx, tol, 'dx');
  expectClose(got.dScale, want.dScale, tol, 'dScale');
}

/** What every install is checked for, `load` holding what is particular to it. */
function consumerCases(
  state: () => { project: string; env: NodeJS.ProcessEnv },
  load: (result: Consumed) => void,
) {
  const results: Partial<Record<'cjs' | 'esm', Consumed>> = {};

  test('require() loads the CommonJS build and names the backend and reason', () => {
    const { project, env } = state();
    const r = (results.cjs = consume(project, 'consumer.cjs', env));
    expect(r.entry).toBe(
      join(realpathSync(project), 'node_modules', 'contranorm', 'dist', 'index.cjs'),
    );
    load(r);
  });

  test('import loads the ES module build and gives the same backend and values', () => {
    const { project, env } = state();
    const r = (results.esm = consume(project, 'consumer.mjs', env));
    expect(r.entry).toBe(
      join(realpathSync(project), 'node_modules', 'contranorm', 'dist', 'index.js'),
    );
    load(r);
    if (results.cjs !== undefined) expect(r).toEqual({ ...results.cjs, entry: r.entry });
  });

  test("a forward and backward call give the repository's own values", () => {
    const r = results.cjs ?? consume(state().project, 'consumer.cjs', state().env);
    expectOwnValues(r);
  });

  test('a TypeScript consumer type-checks against the shipped declarations', () => {
    const { project, env } = state();
    mustRun(process.execPath, [tsc, '-p', join(project, 'tsconfig.json')], { cwd: project, env });
  });
}

// ---------------------------------------------------------------------------------------------

let tmp = '';
let packed: Packed;
let bare = '';

beforeAll(() => {
  tmp = realpathSync(mkdtempSync(join(os.tmpdir(), 'contranorm-pack-')));

  // dist/: compiled JavaScript and declarations
  const dist = ['index.js', 'index.cjs', 'index.d.ts', 'index.d.cts'].map((f) =>
    join(root, 'dist', f),
  );
  const sources = [...filesUnder(join(root, 'lib'), /\.ts$/), join(root, 'tsup.config.ts')];
  if (
    !dist.every(existsSync) ||
    Math.min(...dist.map((f) => statSync(f).mtimeMs)) < newest(sources)
  ) {
    mustRun('npm', ['run', 'build:ts'], { cwd: root, env: childEnv() });
  }

  // prebuilds/linux-x64, then the tarball, then the same tarball without the prebuild
  if (stale !== null && blocker === null) makePrebuild(tmp);
  packed = npmPack(root, join(tmp, 'packed'));
  const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
  console.log(
    `packaging: ${packed.file}: ${mb(packed.size)} packed, ${mb(packed.unpackedSize)} ` +
      `unpacked, ${packed.files.length} files`,
  );
  const stripped = unpack(packed.file, join(tmp, 'bare'));
  rmSync(join(stripped, 'prebuilds'), { recursive: true, force: true });
  bare = join(tmp, `${pkg.name}-${pkg.version}-no-prebuild.tgz`);
  mustRun('tar', ['-czf', bare, '-C', join(tmp, 'bare'), 'package']);
}, 30 * MINUTE);

afterAll(() => {
  if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
});

describe('the tarball', () => {
  test('holds the compiled JavaScript, declarations, native sources, build files, README and LICENSE', () => {
    const paths = packed.files.map((f) => f.path);
    const sources = nativeInputs().map((f) => f.slice(root.length + 1));
    for (const f of [
      'package.json',
      'README.md',
      'LICENSE',
      'dist/index.js',
      'dist/index.cjs',
      'dist/index.d.ts',
      'dist/index.d.cts',
      'bin/contranorm-build.mjs',
      ...sources,
    ]) {
      expect(paths, f).toContain(f);
    }

    // every source CMakeLists.txt names is there
    const cmake = readFileSync(join(root, 'CMakeLists.txt'), 'utf8');
    for (const f of cmake.match(/native\/[\w.]+\.(cc|cu)\b/g) ?? []) expect(paths, f).toContain(f);
  });

  test('holds no tests, benchmarks, examples, TypeScript sources, source maps or build folders', () => {
    const paths = packed.files.map((f) => f.path);
    const banned =
      /^(test|bench|examples|lib|build|node_modules|coverage|\.ci|\.device|native\/emu)\//;
    expect(paths.filter((p) => banned.test(p) || /\.(map|tgz)$/.test(p))).toEqual([]);
  });

  test('package.json: no install script, no implicit node-gyp build, the build command as bin', () => {
    const manifest = JSON.parse(readFileSync(join(tmp, 'bare', 'package', 'package.json'), 'utf8'));
    for (const script of ['preinstall', 'install', 'postinstall']) {
      expect(manifest.scripts?.[script], script).toBeUndefined();
    }
    expect(manifest.gypfile).toBe(false);
    // npm lists `node-gyp rebuild` as an install script wherever a binding.gyp ships
    expect(packed.files.map((f) => f.path)).not.toContain('binding.gyp');
    expect(manifest.bin).toEqual({ 'contranorm-build': 'bin/contranorm-build.mjs' });
    expect(BUILD_COMMAND).toBe('npx contranorm-build');
    expect(Object.keys(manifest.dependencies)).toEqual(['node-gyp-build']);
  });

  test.skipIf(!withPrebuild)(
    `holds the Linux x64 prebuild: Node-API, stripped, with the CUDA code (${prebuildNote})`,
    () => {
      const file = prebuildFile()!;
      const inTarball = packed.files.find(
        (f) => f.path === `prebuilds/linux-x64/${file.split('/').pop()}`,
      );
      expect(inTarball?.size).toBe(statSync(file).size);
      const sections = elfSections(file);
      expect(sections).toContain('.nv_fatbin');
      expect(sections.filter((s) => s === '.symtab' || s.startsWith('.debug'))).toEqual([]);
      const r = run(process.execPath, ['-p', `require(${JSON.stringify(file)}).version`]);
      expect(r.out.trim()).toBe(pkg.version);

      // the README promises Linux x64 with glibc 2.34 or newer
      const glibc = [...readFileSync(file, 'latin1').matchAll(/GLIBC_2\.(\d+)/g)];
      const newestGlibc = Math.max(...glibc.map((m) => Number(m[1])));
      console.log(`packaging: the prebuild needs glibc 2.${newestGlibc}`);
      expect(newestGlibc, 'glibc the prebuild needs, against the README').toBeLessThanOrEqual(34);
    },
  );
});

describe.skipIf(!withPrebuild)(
  `installed with the prebuild, install scripts ignored (${prebuildNote})`,
  () => {
    let project = '';
    const env = childEnv();

    beforeAll(() => {
      project = makeProject(join(tmp, 'ignore-scripts'));
      const r = npmInstall(project, packed.file, ['--ignore-scripts'], env);
      expect(r.status, r.out).toBe(0);
    }, 15 * MINUTE);

    consumerCases(
      () => ({ project, env }),
      (r) => {
        // the module loads: CUDA runs, or the reason names what CUDA lacks, not the module
        expect(r.native).toMatch(/[\\/]prebuilds[\\/]linux-x64[\\/][^\\/]+\.node$/);
        if (r.info.backend === 'cuda') {
          expect(r.info.device).toEqual(expect.any(String));
        } else {
          expect(r.info.reason).not.toMatch(/no native CUDA module/);
          expect(r.info.reason).toMatch(/driver|device|cuBLAS|compute capability/);
        }
      },
    );

    test('with a musl C library the glibc prebuild is passed over, and the reason says so', () => {
      // node-gyp-build takes the C library from LIBC where set, as it would find it on Alpine
      const r = consume(project, 'consumer.cjs', { ...env, LIBC: 'musl' });
      expect(r.native).toBeNull();
      expect(r.info).toEqual({ backend: 'cpu', reason: expect.any(String) });
      expect(r.info.reason).toContain(`no prebuilt binary for ${platform}`);
      expect(r.info.reason).toContain(BUILD_COMMAND);
    });
  },
);

describe.skipIf(!withPrebuild)(
  `installed with the prebuild, install scripts allowed (${prebuildNote})`,
  () => {
    let project = '';
    let env: NodeJS.ProcessEnv = {};
    let installed: Ran;
    const calls = () => {
      const log = join(project, 'tool-calls.log');
      return existsSync(log) ? readFileSync(log, 'utf8') : '';
    };

    beforeAll(() => {
      project = makeProject(join(tmp, 'allow-scripts'));

      // stand-ins, first on PATH, that log any call to a build tool and fail
      const fake = join(project, 'fake-tools');
      mkdirSync(fake);
      const tools = ['nvcc', 'cmake', 'cmake-js', 'make', 'ninja', 'node-gyp', 'python', 'python3'];
      for (const tool of [...tools, 'cc', 'c++', 'gcc', 'g++', 'clang', 'clang++']) {
        const script = `#!/bin/sh\necho "${tool} $*" >> "${join(project, 'tool-calls.log')}"\nexit 1\n`;
        writeFileSync(join(fake, tool), script);
        chmodSync(join(fake, tool), 0o755);
      }
      env = childEnv({ PATH: `${fake}${delimiter}${process.env.PATH}` });
      const flags = ['--dangerously-allow-all-scripts', '--foreground-scripts'];
      installed = npmInstall(project, packed.file, flags, env);
    }, 15 * MINUTE);

    test('the install succeeds, runs no compiler and builds nothing', () => {
      expect(installed.status, installed.out).toBe(0);
      expect(calls()).toBe('');
      expect(existsSync(join(project, 'node_modules', 'contranorm', 'build'))).toBe(false);
      expect(installed.out).not.toMatch(/install-scripts.*contranorm/);
    });

    consumerCases(
      () => ({ project, env }),
      (r) => {
        expect(r.native).toMatch(/[\\/]prebuilds[\\/]linux-x64[\\/][^\\/]+\.node$/);
        if (r.info.backend === 'cpu') expect(r.info.reason).not.toMatch(/no native CUDA module/);
      },
    );

    test('running the package calls no build tool either', () => {
      expect(calls()).toBe('');
    });
  },
);

describe('installed without the prebuild, no nvcc on PATH', () => {
  let project = '';
  let env: NodeJS.ProcessEnv = {};
  let installed: Ran;

  beforeAll(() => {
    project = makeProject(join(tmp, 'no-prebuild'));

    // PATH: one folder holding node, npm, npx and sh, nothing else
    const bin = join(project, 'path');
    mkdirSync(bin);
    const needed: [string, string | null][] = [
      ['node', process.execPath],
      ['npm', onPath('npm')],
      ['npx', onPath('npx')],
      ['sh', onPath('sh')],
    ];
    for (const [name, file] of needed) {
      if (file === null) throw new Error(`${name} is not on PATH`);
      symlinkSync(realpathSync(file), join(bin, name));
    }
    env = childEnv({ PATH: bin });
    for (const key of ['CUDACXX', 'CUDA_HOME', 'CUDA_PATH']) delete env[key];
    expect(onPath('nvcc', bin)).toBeNull();
    const flags = ['--dangerously-allow-all-scripts', '--foreground-scripts'];
    installed = npmInstall(project, bare, flags, env);
  }, 15 * MINUTE);

  test('the install succeeds and leaves no prebuild and no build', () => {
    expect(installed.status, installed.out).toBe(0);
    const dir = join(project, 'node_modules', 'contranorm');
    expect(existsSync(join(dir, 'dist', 'index.js'))).toBe(true);
    expect(existsSync(join(dir, 'prebuilds'))).toBe(false);
    expect(existsSync(join(dir, 'build'))).toBe(false);
  });

  consumerCases(
    () => ({ project, env }),
    (r) => {
      // the TypeScript path, and the reason names the missing prebuild and the build command
      expect(r.native).toBeNull();
      expect(r.info.backend).toBe('cpu');
      expect(r.info.reason).toContain(`no prebuilt binary for ${platform}`);
      expect(r.info.reason).toContain(BUILD_COMMAND);
    },
  );

  test(`${BUILD_COMMAND} says in one line what a source build needs, and fails`, () => {
    const r = run('npx', ['--offline', 'contranorm-build'], { cwd: project, env });
    expect(r.status, r.out).toBe(1);
    expect(r.out.trim().split('\n')).toEqual([
      'contranorm-build: a source build needs cmake-js and node-addon-api: ' +
        'npm install --save-dev cmake-js node-addon-api, then npx contranorm-build again',
    ]);
  });
});
