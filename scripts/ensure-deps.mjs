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

// Debian packages some tests need: Chromium (the dashboard's browser test; playwright-core downloads
// none) and nats-server (the JetStream transport's cluster). Installed here where this user can
// (root with apt-get); otherwise the tests say how.
const packages = [
  {
    name: 'chromium',
    path: process.env.BATON_CHROMIUM ?? '/usr/bin/chromium',
    env: 'BATON_CHROMIUM',
  },
  {
    name: 'nats-server',
    path: process.env.BATON_NATS_SERVER ?? '/usr/sbin/nats-server',
    env: 'BATON_NATS_SERVER',
  },
];
const missing = packages.filter((p) => !existsSync(p.path));
if (missing.length > 0) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  let aptGet = false;
  try {
    execSync('command -v apt-get', { stdio: 'ignore' });
    aptGet = true;
  } catch {}
  const names = missing.map((p) => p.name).join(' ');
  if (root && aptGet) {
    console.error(`› installing ${names} for the tests (apt-get install) …`);
    execSync(
      `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${names}`,
      {
        stdio: 'inherit',
      },
    );
  } else {
    for (const p of missing)
      console.error(
        `› no ${p.name} at ${p.path}: the tests that need it will fail. Install it (Debian/Ubuntu: \`sudo apt-get install -y ${p.name}\`) or set ${p.env} to its binary.`,
      );
  }
}
