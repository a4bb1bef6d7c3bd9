import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'lib/index.ts' },
  format: ['esm', 'cjs'],
  // internals (marked @internal) stay out of the shipped declarations
  dts: { compilerOptions: { stripInternal: true } },
  // class names as written, for error messages that name a received value's class
  keepNames: true,
  sourcemap: true,
  clean: true,
  shims: true,
  target: 'node20',
  outDir: 'dist',
});
