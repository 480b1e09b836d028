// The few things an ES module and a CommonJS module must do differently, one
// file per format (package.json "imports" picks it: `#host`). Hand-written
// JavaScript, not compiled: TypeScript's CommonJS output cannot keep
// `import.meta` nor a real `import()`.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package's root directory (where `sql/` lives), whichever build runs. */
export const packageRoot = dirname(dirname(fileURLToPath(import.meta.url)));

/** A real dynamic import, for dependencies shipped only as ES modules. */
export const importModule = (specifier) => import(specifier);
