import { defineConfig } from 'tsdown';

/**
 * The published build: every face (`baton`, `baton/pg`, `baton/testing`) and
 * the CLI, as ES modules (.mjs) and CommonJS (.cjs), each with bundled type
 * declarations (.d.mts / .d.cts) that import nothing by a `.ts` path — so
 * they resolve under TypeScript ≥ 4.9 in node10, node16/nodenext and bundler
 * resolution. Dependencies stay external.
 */
export default defineConfig({
  entry: {
    index: 'src/index.ts',
    pg: 'src/pg.ts',
    'testing/index': 'src/testing/index.ts',
    'cli/main': 'src/cli/main.ts',
  },
  format: ['esm', 'cjs'],
  platform: 'node',
  target: 'node20',
  dts: true,
  shims: true,
  sourcemap: true,
  clean: true,
  outDir: 'dist',
});
