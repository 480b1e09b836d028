// The CommonJS twin of index.mjs (see there).
'use strict';
const { dirname } = require('node:path');

/** The package's root directory (where `sql/` lives), whichever build runs. */
exports.packageRoot = dirname(__dirname);

/** A real dynamic import (kept by Node in CommonJS), for dependencies shipped only as ES modules. */
exports.importModule = (specifier) => import(specifier);
