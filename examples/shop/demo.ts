/**
 * The shop, as a story: three services (customers, orders, loyalty), each a
 * real process with its own database, talking through Baton's signed HTTP
 * feeds and participant calls. Ends with an integrity report; exits 0 only
 * if every check holds.
 *
 *   npm run demo                    run the story, check, stop
 *   npm run demo -- --keep-running  leave the services up and print their URLs
 *   npm run demo -- --separate-clusters   one PostgreSQL per service
 *   npm run demo -- --transport nats      events over NATS JetStream (a 3-node cluster on loopback)
 */
import { integrityChecks } from './integrity.ts';
import { startShop } from './launcher.ts';
import { story } from './story.ts';

const args = new Set(process.argv.slice(2));
const keepRunning = args.has('--keep-running');
const transportArg = process.argv[process.argv.indexOf('--transport') + 1];
const transport = process.argv.includes('--transport') ? transportArg : 'http';
if (transport !== 'http' && transport !== 'nats') {
  console.error(`--transport must be http or nats (got ${JSON.stringify(transportArg)})`);
  process.exit(2);
}
const between: 'http' | 'nats' = transport;
const say = (line = '') => console.log(line);
const step = (line: string) => say(`\n▶ ${line}`);

async function main(): Promise<number> {
  step(
    `starting PostgreSQL (embedded, from npm) and three services, each with its own database${between === 'nats' ? ', and a 3-node NATS JetStream cluster between them' : ''}`,
  );
  const shop = await startShop({
    separateClusters: args.has('--separate-clusters'),
    transport: between,
  });
  try {
    for (const [name, url] of Object.entries(shop.urls)) say(`  ${name.padEnd(9)} ${url}`);
    await story(shop, say);
    step('integrity report');
    const checks = await integrityChecks(shop.databaseUrls, shop.urls, shop.adminToken);
    for (const check of checks)
      say(`  ${check.ok ? '✓' : '✗'} ${check.name}${check.ok ? '' : `  (${check.detail})`}`);
    const failed = checks.filter((c) => !c.ok).length;
    say(`\n${checks.length - failed} passed, ${failed} failed`);
    if (keepRunning) {
      say('\nThe services keep running (Ctrl-C to stop):');
      for (const [name, url] of Object.entries(shop.urls))
        say(
          `  ${name.padEnd(9)} dashboard ${url}/dashboard   metrics ${url}/ops/metrics   database ${shop.databaseUrls[name as keyof typeof shop.urls]}`,
        );
      say(
        `  (operator token, for the dashboard's login and as metrics' Bearer token: ${shop.adminToken})`,
      );
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
    return failed === 0 ? 0 : 1;
  } finally {
    await shop.stop();
  }
}

main()
  .then((code) => {
    process.exitCode = code;
  })
  .catch((error) => {
    console.error('demo failed:', error);
    process.exitCode = 1;
  });
