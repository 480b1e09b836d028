// The published build, ES modules and CommonJS from the same sources:
//
//   dist/**/*.js, *.d.ts          ES modules (the package is "type": "module")
//   dist/cjs/**/*.cjs, *.d.cts    CommonJS (the CLI is ES modules only)
//
// TypeScript compiles both (tsconfig.build.json, tsconfig.build-cjs.json);
// this script then does what it leaves undone. The sources import each other
// as `./x.ts` (rewriteRelativeImportExtensions rewrites the JavaScript, not
// the declarations), so every declaration's relative specifiers are set to
// the file they name in its build; the CommonJS files get the .cjs/.d.cts
// names that make Node and TypeScript read them as CommonJS inside a
// "type": "module" package. (A bundler would do this — tsup and tsdown need
// Node 22, and Baton builds on Node 20.)
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const tsc = (project) =>
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', project], {
    cwd: root,
    stdio: 'inherit',
  });

/** Every file under a directory. */
function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}

/** Relative specifiers ending in .ts or .js, in `from '…'`, `import('…')` and `require("…")`. */
const RELATIVE = /((?:from\s+|import\(|require\()['"])(\.{1,2}\/[^'"]*?)\.(?:ts|js)(['"])/g;
const withExtension = (text, extension) => text.replace(RELATIVE, `$1$2.${extension}$3`);

rmSync(join(root, 'dist'), { recursive: true, force: true });
tsc('tsconfig.build.json');
tsc('tsconfig.build-cjs.json');
const cjs = join(root, 'dist', 'cjs');
for (const path of files(join(root, 'dist'))) {
  const inCjs = path.startsWith(cjs);
  if (path.endsWith('.d.ts')) {
    const text = withExtension(readFileSync(path, 'utf8'), inCjs ? 'cjs' : 'js');
    writeFileSync(inCjs ? path.replace(/\.d\.ts$/, '.d.cts') : path, text);
    if (inCjs) rmSync(path);
  } else if (inCjs && path.endsWith('.js')) {
    const text = withExtension(readFileSync(path, 'utf8'), 'cjs').replace(
      /\/\/# sourceMappingURL=(.*)\.js\.map$/m,
      '//# sourceMappingURL=$1.cjs.map',
    );
    writeFileSync(path.replace(/\.js$/, '.cjs'), text);
    rmSync(path);
  } else if (inCjs && path.endsWith('.js.map')) {
    renameSync(path, path.replace(/\.js\.map$/, '.cjs.map'));
  }
}
