import { pushSchema } from 'drizzle-kit/api';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { DataSource, EntitySchema } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readStatus } from '../src/index.ts';
import type { MissingObject } from '../src/references/installed-objects.ts';
import { eventually } from './helpers.ts';
import { inProcess } from './support/baton-cli.ts';
import { caughtUp, startService, type TestService } from './support/services.ts';

/**
 * The schema tools users run beside Baton, run for real against Baton's
 * objects in their tables: TypeORM `synchronize` and drizzle-kit `push` drop
 * the foreign key they do not know; re-creating a column (what a tool does
 * for a changed type) drops the check trigger on it; an operator disables
 * the capture trigger. Each is reported — by `baton status` (from the
 * database alone) and by the caretaker, whose repairing run restores them
 * (`install()`) and then finds the reference that slipped in meanwhile.
 */

// TypeORM entities (as schemas: the decorators need the legacy transform this test runner does not do).
const User = new EntitySchema({
  name: 'User',
  tableName: 'users',
  columns: { id: { type: 'text', primary: true }, firstName: { type: 'text' } },
});
const Order = new EntitySchema({
  name: 'Order',
  tableName: 'orders',
  columns: { id: { type: 'text', primary: true }, userId: { type: 'text', nullable: true } },
});

const drizzleOrders = pgTable('orders', {
  id: text('id').primaryKey(),
  userId: text('userId'),
  qty: integer('qty'),
});

let accounts: TestService;
let shop: TestService;

beforeAll(async () => {
  accounts = await startService('tools_accounts');
  shop = await startService('tools_shop');
  await accounts.database.db.query(
    'CREATE TABLE users (id text PRIMARY KEY, "firstName" text NOT NULL)',
  );
  accounts.baton.entity({ name: 'user', table: 'users', key: 'id', fields: ['firstName'] });
  await accounts.baton.install();
  await shop.database.db.query('CREATE TABLE orders (id text PRIMARY KEY, "userId" text)');
  shop.baton.replicate({
    entity: 'user',
    owner: shop.ownerClientOf(accounts),
    consumer: shop.consumerOf(accounts),
  });
  shop.baton.reference({ table: 'orders', column: 'userId', entity: 'user', onDelete: 'keep' });
  await shop.baton.install();
  await shop.startConsumers();
  await accounts.database.db.query(`INSERT INTO users VALUES ('ada', 'Ada')`);
  await eventually(() => caughtUp(accounts, shop), 'shop caught up with accounts');
});
afterAll(async () => {
  await shop?.stop();
  await accounts?.stop();
});

const missing = async (service: TestService): Promise<Omit<MissingObject, 'name'>[]> =>
  (await readStatus(service.database.db)).references.missingObjects.map(
    ({ name: _name, ...m }) => m,
  );

/** Runs TypeORM's synchronize for `entity` against the service's database, as an app's boot does. */
async function typeormSynchronize(service: TestService, entity: EntitySchema) {
  const source = new DataSource({
    type: 'postgres',
    url: service.database.url,
    entities: [entity],
    synchronize: true,
    poolSize: 1,
  });
  await source.initialize();
  await source.destroy();
}

describe('schema tools beside Baton', () => {
  it('nothing is missing after install', async () => {
    expect(await missing(accounts)).toEqual([]);
    expect(await missing(shop)).toEqual([]);
  });

  it('TypeORM synchronize drops the foreign key: status reports it; a repairing caretaker restores it', async () => {
    await typeormSynchronize(shop, Order);
    await typeormSynchronize(accounts, User);
    expect(await missing(shop)).toEqual([
      {
        kind: 'foreign key',
        table: 'orders',
        declaredBy: 'reference orders.userId → user',
        state: 'missing',
      },
    ]);
    expect(await missing(accounts)).toEqual([]); // TypeORM leaves triggers alone
    const status = await inProcess(['status'], { BATON_DATABASE_URL: shop.database.url });
    expect(status.stdout).toMatch(/1 of Baton's keys and triggers in your tables is not in force/);
    expect(status.stdout).toMatch(/orders +foreign key +baton_ref_userId_user +missing/);

    const dry = await shop.baton.caretaker().run();
    expect(dry.installation?.missing).toHaveLength(1);
    expect(dry.totals.missingObjects).toBe(1);
    const repaired = await shop.baton.caretaker().run({ repair: true });
    expect(repaired.installation).toMatchObject({ restored: 1 });
    expect(repaired.totals.missingObjects).toBe(0);
    expect(await missing(shop)).toEqual([]);
  });

  it('drizzle-kit push drops it too (its statements say so); restored the same way', async () => {
    const pool = new pg.Pool({ connectionString: shop.database.url, max: 1 });
    try {
      const push = await pushSchema({ drizzleOrders }, drizzle({ client: pool }) as never, [
        'public',
      ]);
      expect(push.statementsToExecute.join('\n')).toMatch(
        /DROP CONSTRAINT "baton_ref_userId_user"/,
      );
      await push.apply();
    } finally {
      await pool.end();
    }
    expect((await missing(shop)).map((m) => m.kind)).toEqual(['foreign key']);
    await shop.baton.install(); // what every start of the service does
    expect(await missing(shop)).toEqual([]);
  });

  it('a re-created column loses its check trigger; the reference that slips in meanwhile is found after the restore', async () => {
    // Without CASCADE PostgreSQL refuses: the check trigger depends on the column.
    await expect(shop.database.db.query('ALTER TABLE orders DROP COLUMN "userId"')).rejects.toThrow(
      /other objects depend on it/,
    );
    await shop.database.db.query('ALTER TABLE orders DROP COLUMN "userId" CASCADE');
    await shop.database.db.query('ALTER TABLE orders ADD COLUMN "userId" text');
    expect((await missing(shop)).map((m) => `${m.kind}:${m.state}`).sort()).toEqual([
      'check trigger:missing',
      'foreign key:missing',
    ]);
    await shop.database.db.query(`INSERT INTO orders (id, "userId") VALUES ('o-ghost', 'ghost')`); // not checked now
    const report = await shop.baton.caretaker().run({ repair: true });
    expect(report.installation?.restored).toBe(2);
    expect(await missing(shop)).toEqual([]);
    const rows = report.entities.flatMap((e) => e.referencingRows);
    expect(rows.reduce((n, r) => n + r.dangling, 0)).toBeGreaterThanOrEqual(1);
  });

  it('a disabled capture trigger is reported as disabled, not as fine', async () => {
    await accounts.database.db.query('ALTER TABLE users DISABLE TRIGGER USER');
    expect((await missing(accounts)).map((m) => `${m.kind}:${m.state}`)).toEqual([
      'capture trigger:disabled',
      'truncate guard:disabled',
    ]);
    await accounts.database.db.query('ALTER TABLE users ENABLE TRIGGER USER');
    expect(await missing(accounts)).toEqual([]);
  });
});
