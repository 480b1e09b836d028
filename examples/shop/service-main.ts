/**
 * One shop service as a process: `tsx examples/shop/service-main.ts`, its
 * config (secrets and database URL included) as JSON on the first line of
 * stdin — never on the command line, where `ps` shows it to every user.
 * Prints `ready <url>` when it serves; exits on SIGTERM/SIGINT, or when its
 * parent closes stdin (a launcher that died takes its services with it).
 */
import { writeSync } from 'node:fs';
import { destination } from 'pino';
import { createJsonLogger, type Logger } from '../../src/index.ts';
import { isConnectionError } from '../../src/pg.ts';
import type { ServiceConfig } from './config.ts';
import { declareCustomers } from './customers-service.ts';
import { declareLoyalty } from './loyalty-service.ts';
import { declareOrders } from './orders-service.ts';
import { startService } from './service-base.ts';

const config = await readConfig();
// The trace test: this process's spans as JSON lines (a deployment would export OTLP instead).
if (config.traceFile)
  (await import('./trace-file.ts')).traceToFile(config.traceFile, config.service);
if (config.clockOffsetMs) {
  // Chaos runs: a process whose clock is off. Baton orders nothing by clocks; signatures carry a window.
  const realNow = Date.now.bind(Date);
  Date.now = () => realNow() + (config.clockOffsetMs ?? 0);
}
const say = (line: string) => writeSync(1, `${line}\n`);
// JSON lines on stderr (the launcher keeps the last ones as a process's last words), warn and above.
const logger: Logger = createJsonLogger({
  service: config.service,
  level: 'warn',
  destination: destination({ fd: 2, sync: true }),
});

const declare = { customers: declareCustomers, orders: declareOrders, loyalty: declareLoyalty }[
  config.service
];
if (!declare) {
  process.stderr.write(
    `unknown service ${JSON.stringify(config.service)}: expected customers, orders or loyalty\n`,
  );
  process.exit(2);
}

const running = await startWhileDatabaseComesBack();
const shutdown = async () => {
  await running.stop().catch(() => {});
  process.exit(0);
};
// Listening for the signals before saying it is ready: whoever reads the line may stop it at once.
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.resume();
say(`ready ${running.url}`);

/** The first line of stdin, as the service's config. */
function readConfig(): Promise<ServiceConfig> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      const end = text.indexOf('\n');
      if (end === -1) return;
      process.stdin.off('data', onData);
      try {
        resolve(JSON.parse(text.slice(0, end)) as ServiceConfig);
      } catch (error) {
        reject(new Error(`the config line on stdin is not JSON: ${(error as Error).message}`));
      }
    };
    process.stdin.on('data', onData);
    process.stdin.once('end', () => reject(new Error('stdin closed before the config line')));
  });
}

/**
 * Starts the service; if the database goes away half way through the start
 * (a restart, crash recovery), stops what was started and starts again, for
 * up to a minute. Every start step is idempotent (migrations, CREATE … IF NOT
 * EXISTS, installing triggers), so a repeat is safe.
 */
async function startWhileDatabaseComesBack() {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await startService(config, logger, declare as NonNullable<typeof declare>);
    } catch (error) {
      if (!isConnectionError(error) || Date.now() > deadline) throw error;
      logger.warn({ err: error }, 'database unavailable during start-up; starting again');
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}
