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

// The dashboard's browser test needs a Chromium (Debian's package; playwright-core downloads none).
// Installed here where this user can (root with apt-get); otherwise the test says how.
const chromium = process.env.BATON_CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(chromium)) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  let aptGet = false;
  try {
    execSync('command -v apt-get', { stdio: 'ignore' });
    aptGet = true;
  } catch {}
  if (root && aptGet) {
    console.error(
      '› installing Chromium for the dashboard browser test (apt-get install chromium) …',
    );
    execSync(
      'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium',
      {
        stdio: 'inherit',
      },
    );
  } else {
    console.error(
      `› no Chromium at ${chromium}: the dashboard browser test will fail. Install it (Debian/Ubuntu: \`sudo apt-get install -y chromium\`) or set BATON_CHROMIUM to a Chromium binary.`,
    );
  }
}
