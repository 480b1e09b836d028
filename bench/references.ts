/**
 * `npm run bench -- references [--quick] [--json] [--clients N] [--rows N]`
 *
 * The write cost of a reference: inserting a referencing row (an order
 * pointing at a customer of another service) with Baton — a real foreign key
 * to the replica plus the check trigger (share lock on the replica row) — and
 * with `reference.check(tx, id)` in front, against the same insert into the
 * same table without Baton. Each insert is its own durable transaction;
 * `--clients` run concurrently (default 8); the variants alternate in rounds
 * and each ratio is the median of the rounds' ratios.
 *
 * Measured: transactions per second of insert-and-commit, on one embedded
 * PostgreSQL (fsync on). Not measured: the owner lookup of an id the replica
 * has never seen (every id here is already replicated), replication itself.
 */
import pg from 'pg';
import { createBaton, ownerClient } from '../src/index.ts';
import { PgDatabase, startEmbeddedPostgres } from '../src/pg.ts';
import type { BenchFlags } from './support/args.ts';
import { heading, say, table } from './support/report.ts';
import { median, round } from './support/stats.ts';

type Variant = 'plain' | 'baton-trigger' | 'baton-check';

export async function run(flags: BenchFlags): Promise<void> {
  const clients = flags.clients ?? 8;
  const customers = flags.rows ?? 10_000;
  const rounds = flags.quick ? 4 : 10;
  const roundMs = flags.quick ? 1_500 : 3_000;
  heading('references: write cost of a referencing insert');
  say(
    `  ${clients} clients, ${customers} replicated customers, ${rounds} rounds × ${roundMs} ms per variant`,
  );
  const cluster = await startEmbeddedPostgres();
  const url = await cluster.createDatabase('references_bench');
  const db = new PgDatabase({ connectionString: url, max: clients + 2 });
  try {
    const baton = createBaton({ db, service: 'orders' });
    await baton.migrate();
    await db.query(`
      CREATE TABLE orders_plain (id bigserial PRIMARY KEY, customer_id text NOT NULL, note text);
      CREATE TABLE orders_ref (id bigserial PRIMARY KEY, customer_id text NOT NULL, note text);`);
    // The owner is never asked (every id is replicated); the client only has to exist.
    const owner = ownerClient({
      name: 'customers',
      url: 'http://127.0.0.1:9/baton',
      auth: { type: 'bearer', token: 'unused-token-0123456789' },
    });
    const consumer = baton.consumer({
      name: 'bench',
      source: { name: 'customers', fetch: async () => ({ items: [], cursor: '0' }) },
    });
    baton.replicate({ entity: 'customer', owner, consumer });
    const ref = baton.reference({
      table: 'orders_ref',
      column: 'customer_id',
      entity: 'customer',
      onDelete: 'keep',
    });
    await baton.install();
    await db.query(
      `INSERT INTO baton.replica_customer (id, state, version, fields)
       SELECT 'c' || g, 'ACTIVE', 1, '{}' FROM generate_series(1, $1) g`,
      [customers],
    );
    await db.query('ANALYZE baton.replica_customer');

    const pools = Array.from({ length: clients }, () => new pg.Client({ connectionString: url }));
    await Promise.all(pools.map((c) => c.connect()));
    const insertOnce = async (client: pg.Client, variant: Variant, n: number) => {
      const id = `c${1 + (n % customers)}`;
      await client.query('BEGIN');
      if (variant === 'baton-check') await ref.check(client, id);
      await client.query(
        `INSERT INTO ${variant === 'plain' ? 'orders_plain' : 'orders_ref'} (customer_id, note) VALUES ($1, 'x')`,
        [id],
      );
      await client.query('COMMIT');
    };
    const measure = async (variant: Variant) => {
      let done = 0;
      const end = Date.now() + roundMs;
      await Promise.all(
        pools.map(async (client, i) => {
          let n = i * 7919;
          while (Date.now() < end) {
            await insertOnce(client, variant, n++);
            done++;
          }
        }),
      );
      return (done * 1000) / roundMs;
    };
    const variants: Variant[] = ['plain', 'baton-trigger', 'baton-check'];
    const results: Record<Variant, number[]> = {
      plain: [],
      'baton-trigger': [],
      'baton-check': [],
    };
    const ratios: Record<Exclude<Variant, 'plain'>, number[]> = {
      'baton-trigger': [],
      'baton-check': [],
    };
    await measure('plain'); // warm-up
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? variants : [...variants].reverse();
      const tps: Partial<Record<Variant, number>> = {};
      for (const v of order) tps[v] = await measure(v);
      for (const v of variants) results[v].push(tps[v] as number);
      ratios['baton-trigger'].push((tps.plain as number) / (tps['baton-trigger'] as number));
      ratios['baton-check'].push((tps.plain as number) / (tps['baton-check'] as number));
    }
    await Promise.all(pools.map((c) => c.end()));
    const summary = {
      benchmark: 'references',
      clients,
      plainTps: round(median(results.plain)),
      triggerTps: round(median(results['baton-trigger'])),
      checkTps: round(median(results['baton-check'])),
      referencingInsertRatio: round(median(ratios['baton-trigger'])),
      referencingInsertWithCheckRatio: round(median(ratios['baton-check'])),
    };
    table([
      ['variant', 'tx/s (median)', 'ratio to plain (median of rounds)'],
      ['plain insert', summary.plainTps, '1'],
      ['with FK + check trigger', summary.triggerTps, String(summary.referencingInsertRatio)],
      [
        'with ref.check() + FK + trigger',
        summary.checkTps,
        String(summary.referencingInsertWithCheckRatio),
      ],
    ]);
    say('  ratio = plain tx/s ÷ variant tx/s (1.0 = no cost; above 1 = slower)');
    if (flags.json) say(JSON.stringify(summary));
  } finally {
    await db.close();
    await cluster.stop();
  }
}
