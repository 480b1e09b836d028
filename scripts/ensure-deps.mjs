// Installs the dependencies (npm install, with the lock file) when node_modules is missing or older than package-lock.json,
// so `npm run demo` and `npm test` work as the first commands on a fresh clone.
// Uses only Node built-ins: it runs before any dependency exists.
import { execSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';

const installed = 'node_modules/.package-lock.json';
const stale =
  !existsSync(installed) || statSync(installed).mtimeMs < statSync('package-lock.json').mtimeMs;
if (stale) {
  console.error('› installing dependencies (npm install) …');
  // `npm install`, not `npm ci`: npm 11 here refuses the lock file over biome's optional platform packages.
  execSync('npm install --no-audit --no-fund', { stdio: 'inherit' });
}
