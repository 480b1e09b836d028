import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordedCaretaker } from '../src/baton.ts';
import { runCli } from '../src/cli/run.ts';
import { freePort } from '../src/db/free-port.ts';
import { loadMigrations } from '../src/db/migrate.ts';
import { type CaretakerReport, InvalidInputError } from '../src/index.ts';
import { type BatonStatus, readStatus } from '../src/status.ts';
import { eventually, SECRET } from './helpers.ts';
import { baton, inProcess, type Run } from './support/baton-cli.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * `baton reconcile` and the references part of `baton status`, as an
 * operator runs them: the real command as a child process against the
 * referrer's database, while both services keep running (the owner answers
 * the CLI's set reconciliation and lookups over HTTP; the referrer's consumer
 * lets the replica catch up to the cut).
 */

function parse<T>(run: Run): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${run.code}): ${run.stdout}\n${run.stderr}`);
  }
}

describe('baton reconcile and baton status (references), as child processes', () => {
  let customers: TestService;
  let orders: TestService;
  let env: Record<string, string>;

  const owner = (sql: string, values?: unknown[]) => customers.database.db.query(sql, values);
  const referrer = (sql: string, values?: unknown[]) => orders.database.db.query(sql, values);
  /** Statements with triggers and foreign keys off, as a careless script or restore would run them. */
  const bypassing = async (service: TestService, statements: string[]) => {
    await service.database.db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica');
      for (const statement of statements) await tx.query(statement);
    });
  };
  const replica = async () =>
    (await referrer(`SELECT id, state, version FROM baton.replica_customer ORDER BY id`)).rows.map(
      (r) => `${r.id}:${r.state}:${r.version}`,
    );
  const orderCustomers = async () =>
    (await referrer('SELECT customer_id FROM orders ORDER BY id')).rows.map((r) => r.customer_id);

  beforeAll(async () => {
    customers = await startService('customers');
    orders = await startService('orders');
    await owner('CREATE TABLE customers (id text PRIMARY KEY, name text NOT NULL)');
    await owner('CREATE TABLE regions (code text PRIMARY KEY)');
    customers.baton.entity({ name: 'customer', table: 'customers', key: 'id', fields: ['name'] });
    // Nobody consumes these votes here: its delete stays pending, visibly.
    const region = customers.baton.entity({
      name: 'region',
      table: 'regions',
      key: 'code',
      restrictReferrers: ['billing', 'shipping'],
    });
    await customers.baton.install();
    await referrer('CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, note text)');
    orders.baton.replicate({
      entity: 'customer',
      owner: orders.ownerClientOf(customers),
      consumer: orders.consumerOf(customers),
    });
    orders.baton.reference({
      table: 'orders',
      column: 'customer_id',
      entity: 'customer',
      onDelete: 'cascade',
    });
    await orders.baton.install();
    await orders.startConsumers();
    await owner(
      `INSERT INTO customers SELECT 'c' || n, 'Customer ' || n FROM generate_series(1, 200) n`,
    );
    await eventually(async () => (await replica()).length === 200, '200 customers replicated');
    await referrer(
      `INSERT INTO orders (customer_id, note) SELECT 'c' || n, 'order' FROM generate_series(1, 20) n`,
    );
    // A restrict delete that billing has voted on and shipping (down) has not.
    await owner("INSERT INTO regions VALUES ('north')");
    expect(await region.requestDelete('north')).toEqual({
      state: 'pending',
      waitingFor: ['billing', 'shipping'],
    });
    await owner(
      `INSERT INTO baton.delete_votes (entity, id, version, referrer, vote, reference_count)
       SELECT entity, id, version, 'billing', 'prepared', 0 FROM baton.delete_fences WHERE id = 'north'`,
    );
    env = { BATON_DATABASE_URL: orders.database.url, BATON_HMAC_SECRET: SECRET };
  });
  afterAll(async () => {
    await orders?.stop();
    await customers?.stop();
  });

  it('refuses a missing secret (exit 2, names the variable) and an unknown entity (exit 2, lists the known ones)', async () => {
    const [noSecret, unknown, help] = await Promise.all([
      baton(['reconcile'], { BATON_DATABASE_URL: orders.database.url }),
      baton(['reconcile', '--entity', 'unicorn'], env),
      inProcess(['reconcile', '--help'], {}),
    ]);
    expect(noSecret.code).toBe(2);
    expect(noSecret.stdout).toBe('');
    expect(noSecret.stderr).toContain('set BATON_PRIVATE_KEY_FILE');
    expect(noSecret.stderr).toContain('BATON_HMAC_SECRET');
    expect(noSecret.stderr).toContain('BATON_BEARER_TOKEN');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      '--entity unicorn: this service keeps no replica of "unicorn"',
    );
    expect(unknown.stderr).toContain('it replicates customer.');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("run in the service's own caretaker schedule");
    expect(help.stdout).toContain('3 differences remain');
    // Neither touched anything: no run was recorded.
    expect((await referrer('SELECT count(*)::int AS n FROM baton.reconcile_runs')).rows).toEqual([
      { n: 0 },
    ]);
  });

  it('a dry run lists every tampering with its class and exits 3, changing no replica or referencing row; --repair --approve repairs; a second --repair finds 0', async () => {
    // Lost upsert: inserted with the capture trigger off.
    await bypassing(customers, ["INSERT INTO customers VALUES ('c900', 'Sneaky')"]);
    // True orphan: deleted with the trigger off (no tombstone); it has an order (cascade).
    await bypassing(customers, ["DELETE FROM customers WHERE id = 'c2'"]);
    // Lost events: the relay stopped, changes made, their outbox rows removed before delivery.
    await customers.relay.stop();
    await owner("UPDATE customers SET name = 'Renamed' WHERE id = 'c3'");
    await owner("DELETE FROM customers WHERE id = 'c4'");
    await owner("DELETE FROM baton.outbox WHERE seq IS NULL AND type = 'baton.entity.customer'");
    await customers.relay.start();
    // The replica edited by hand, and a referencing row written with constraints off.
    await referrer("UPDATE baton.replica_customer SET version = version + 5 WHERE id = 'c5'");
    await bypassing(orders, [
      "DELETE FROM baton.replica_customer WHERE id = 'c100'",
      "INSERT INTO baton.replica_customer (id, state, version, fields) VALUES ('c777', 'ACTIVE', 1, '{}')",
      "INSERT INTO orders (customer_id, note) VALUES ('nobody', 'dangling')",
    ]);
    const replicaBefore = await replica();
    const ordersBefore = await orderCustomers();

    const text = await baton(['reconcile'], env);
    expect(text.stderr).toBe(''); // not a terminal: no progress bar
    expect(text.code).toBe(3);
    const out = text.stdout;
    expect(out.split('\n')[0]).toContain('NOTHING WAS CHANGED');
    expect(out).toContain('baton reconcile --repair');
    expect(out).toContain('Service orders, database ');
    expect(out).toContain('Entity customer (owner customers)');
    expect(out).toMatch(/cut\s+owner watermark \d+, replica cursor \d+, caught up/);
    expect(out).toMatch(
      /differences\s+7: 2 lost-upsert, 1 stale-replica, 1 lost-delete, 1 diverged, 2 true-orphan/,
    );
    expect(out).toMatch(
      /^\s+c900\s+lost-upsert\s+active v0\s+absent\s+would ask the owner to announce/m,
    );
    expect(out).toMatch(
      /^\s+c5\s+diverged\s+active v1\s+active v6\s+would ask the owner to announce its state above v6/m,
    );
    expect(out).toMatch(/^\s+c4\s+lost-delete\s+deleted v2\s+active v1\s+would apply/m);
    expect(out).toMatch(/^\s+c777\s+true-orphan\s+absent v0\s+active v1\s+would quarantine/m);
    expect(out).toContain('referencing rows orders.customer_id: 1 with no replica entry');
    expect(out).toMatch(/bytes exchanged\s+\d+(\.\d)? k?B/);
    expect(out).toContain("invariants run in the service's own caretaker schedule");
    expect(out).toContain('Result: 8 problems found; run `baton reconcile --repair`');
    expect(await replica()).toEqual(replicaBefore);
    expect(await orderCustomers()).toEqual(ordersBefore);

    const dry = await baton(['reconcile', '--json', '--entity', 'customer'], env);
    expect(dry.code).toBe(3);
    const report = parse<CaretakerReport>(dry);
    expect(report).toMatchObject({ repair: false, skipped: false });
    expect(Object.fromEntries(report.entities[0]!.examples.map((f) => [f.id, f.class]))).toEqual({
      c900: 'lost-upsert',
      c2: 'true-orphan',
      c3: 'stale-replica',
      c4: 'lost-delete',
      c5: 'diverged',
      c100: 'lost-upsert',
      c777: 'true-orphan',
    });
    expect(report.totals).toMatchObject({
      differences: 7,
      repaired: 0,
      referencingRowProblems: 1,
      byClass: {
        'lost-upsert': 2,
        'stale-replica': 1,
        'lost-delete': 1,
        diverged: 1,
        'true-orphan': 2,
      },
    });
    expect(report.totals.bytesExchanged).toBeGreaterThan(0);
    expect(await replica()).toEqual(replicaBefore);
    expect(await orderCustomers()).toEqual(ordersBefore);

    // Another caretaker holds the lease: nothing is checked, exit 1.
    await referrer(
      "INSERT INTO baton.settings VALUES ('caretaker_lease', 'elsewhere|' || (now() + interval '1 minute')::text)",
    );
    const skipped = await inProcess(['reconcile', '--repair'], env);
    await referrer("DELETE FROM baton.settings WHERE name = 'caretaker_lease'");
    expect(skipped.code).toBe(1);
    expect(skipped.stdout).toBe('');
    expect(skipped.stderr).toContain('another caretaker of this service is running');
    expect(skipped.stderr).toContain('nothing was checked');
    expect(await replica()).toEqual(replicaBefore);

    const repair = await baton(['reconcile', '--repair', '--approve'], env);
    expect(repair.stderr).toBe('');
    expect(repair.code).toBe(0);
    expect(repair.stdout.split('\n')[0]).toContain('the differences found are repaired');
    expect(repair.stdout).toMatch(/Totals[\s\S]*repaired\s+8/);
    expect(repair.stdout).toContain('Result: consistent — nothing left to repair.');
    const rows = await replica();
    for (const row of [
      'c900:ACTIVE:1',
      'c2:DELETED:2',
      'c4:DELETED:2',
      'c5:ACTIVE:7',
      'c100:ACTIVE:1',
      'c777:DELETED:2',
    ]) {
      expect(rows).toContain(row);
    }
    const left = await orderCustomers();
    expect(left).not.toContain('c2');
    expect(left).not.toContain('c4');
    expect(left).not.toContain('nobody');
    expect(left).toHaveLength(18);

    const again = await baton(['reconcile', '--repair', '--json'], env);
    expect(again.code).toBe(0);
    expect(parse<CaretakerReport>(again).totals).toMatchObject({
      differences: 0,
      repaired: 0,
      referencingRowProblems: 0,
    });
  });

  it('baton status shows the quarantine, the last run and the apologies (referrer) and the pending delete (owner)', async () => {
    // A new orphan, repaired without --approve: it waits in quarantine, and the run exits 3.
    await bypassing(customers, ["DELETE FROM customers WHERE id = 'c10'"]);
    const repair = await baton(['reconcile', '--repair', '--json'], env);
    expect(repair.code).toBe(3);
    expect(parse<CaretakerReport>(repair).totals).toMatchObject({
      differences: 1,
      quarantined: 1,
      repaired: 0,
    });
    expect(await replica()).toContain('c10:ACTIVE:1');

    const ownerEnv = { BATON_DATABASE_URL: customers.database.url };
    const [referrerJson, referrerText, ownerJson, ownerText] = await Promise.all([
      baton(['status', '--json'], env),
      baton(['status'], env),
      baton(['status', '--json'], ownerEnv),
      baton(['status'], ownerEnv),
    ]);
    for (const run of [referrerJson, referrerText, ownerJson, ownerText]) {
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
    }
    const refs = parse<BatonStatus>(referrerJson).references;
    expect(refs.installed).toBe(true);
    expect(refs.quarantine.total).toBe(1);
    expect(refs.quarantine.items).toEqual([
      expect.objectContaining({ entity: 'customer', id: 'c10', confirmations: 1, approved: false }),
    ]);
    expect(Date.parse(refs.quarantine.items[0]!.firstSeen)).not.toBeNaN();
    expect(refs.lastReconcile).toMatchObject({
      repair: true,
      differences: 1,
      repaired: 0,
      quarantined: 1,
      failedEntities: 0,
    });
    expect(refs.policyActions.apologies).toBeGreaterThanOrEqual(3);
    expect(refs.pendingDeletes).toEqual({ total: 0, items: [] });
    expect(referrerText.stdout).toMatch(/^\s+customer\s+c10\s+1\s+no\s+\S+Z \(/m);
    expect(referrerText.stdout).toMatch(
      /Policy actions: \d+ \(\d+ referencing rows\), of which \d+ apologies/,
    );
    expect(referrerText.stdout).toMatch(/Last reconcile[\s\S]*mode\s+repair[\s\S]*quarantined\s+1/);

    const pending = parse<BatonStatus>(ownerJson).references.pendingDeletes;
    expect(pending.total).toBe(1);
    expect(pending.items).toEqual([
      expect.objectContaining({
        entity: 'region',
        id: 'north',
        waitingFor: ['shipping'],
        voted: ['billing'],
      }),
    ]);
    expect(ownerText.stdout).toMatch(/^\s+region\s+north\s+\d+\s+\S+Z \(.*\)\s+shipping$/m);
    expect(ownerText.stdout).toContain('Last reconcile: never');
  });

  it('draws a progress line on a terminal and clears it before the report', async () => {
    let out = '';
    let err = '';
    const code = await runCli(['reconcile', '--entity', 'customer'], {
      out: (text) => {
        out += text;
      },
      err: (text) => {
        err += text;
      },
      env,
      terminal: () => ({ columns: 60 }),
    });
    expect(code).toBe(3); // c10 still waits (now confirmed twice: a repair run would apply it)
    const ESC = String.fromCharCode(27);
    expect(err.startsWith(`\rreconcile [${'·'.repeat(24)}] 0/1 entity customer (`)).toBe(true);
    expect(err).toContain(`s)${ESC}[K`);
    expect(err).toContain('\rreconcile [########################] 1/1 done');
    expect(err.endsWith(`\r${ESC}[K`)).toBe(true);
    for (const line of err.split('\r'))
      expect(line.replace(`${ESC}[K`, '').length).toBeLessThan(60);
    expect(out).toMatch(
      /^\s+c10\s+true-orphan\s+absent v0\s+active v1\s+would apply the delete policy/m,
    );
  });

  it('status of a schema with only the messaging migration leaves the references sections empty', async () => {
    const [first] = await loadMigrations('only_messaging');
    await orders.database.db.transaction(async (tx) => {
      await tx.query('CREATE SCHEMA only_messaging');
      await tx.query(
        'CREATE TABLE only_messaging.migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      await tx.query(first!.sql);
      await tx.query(`INSERT INTO only_messaging.migrations (id, name) VALUES ($1, $2)`, [
        first!.id,
        first!.name,
      ]);
    });
    const status = await readStatus(orders.database.db, { schema: 'only_messaging' });
    expect(status.migrations.applied).toBe(1);
    expect(status.references).toEqual({
      installed: false,
      pendingDeletes: { total: 0, items: [] },
      quarantine: { total: 0, items: [] },
      policyActions: { total: 0, apologies: 0, rowsAffected: 0 },
      missingObjects: [],
      lastReconcile: null,
    });
    const [text, reconcile] = await Promise.all([
      inProcess(['status', '--schema', 'only_messaging'], env),
      inProcess(['reconcile', '--schema', 'only_messaging'], env),
    ]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('run `baton migrate`');
    expect(text.stdout).not.toContain('Pending deletes');
    expect(reconcile.code).toBe(1);
    expect(reconcile.stderr).toContain('has no references tables');
  });

  it('an owner that does not answer fails its entity (exit 1, the report still printed); targets from the registry; a repair needs the service name', async () => {
    const port = await freePort(); // nothing listens there
    await referrer(
      `INSERT INTO baton.replicas (entity, table_name, id_type, owner, owner_url, subscription)
       VALUES ('ghost', 'replica_ghost', 'text', 'nowhere', $1, 'orders-from-nowhere')`,
      [`http://127.0.0.1:${port}/baton`],
    );
    try {
      const run = await baton(['reconcile', '--entity', 'ghost', '--json'], env);
      expect(run.code).toBe(1);
      const report = parse<CaretakerReport>(run);
      expect(report.entities).toEqual([
        expect.objectContaining({ entity: 'ghost', owner: 'nowhere' }),
      ]);
      expect(report.entities[0]!.error).toContain(
        `owner nowhere at http://127.0.0.1:${port} did not answer`,
      );
      expect(run.stderr).toContain('baton: the check of ghost (owner nowhere');

      // Targets rebuilt from the registry, in the name the referrer recorded at install.
      await referrer(
        `INSERT INTO baton.entity_references (name, table_name, column_name, entity, on_delete)
         VALUES ('shipments.ghost_id', 'shipments', 'ghost_id', 'ghost', 'restrict')`,
      );
      const options = { schema: 'baton', auth: { type: 'hmac', secret: SECRET } as const };
      const recorded = await recordedCaretaker(orders.database.db, options);
      expect(recorded.service).toBe('orders');
      const ghost = recorded.targets.find((t) => t.replication.replica.entity === 'ghost')!;
      expect(ghost.replication.references().map((r) => [r.name, r.def.onDelete])).toEqual([
        ['shipments.ghost_id', 'restrict'],
      ]);
      expect(ghost.replication.replica.idType).toBe('text');
      expect(ghost.owner.url).toBe(`http://127.0.0.1:${port}/baton`);

      // A database that does not record the name (installed by an older Baton): a dry run
      // works, a repair (which publishes apologies and votes) needs --service.
      await referrer("DELETE FROM baton.settings WHERE name = 'service'");
      const unnamed = await recordedCaretaker(orders.database.db, options);
      expect(unnamed.service).toBeUndefined();
      await expect(
        orders.database.db.transaction((tx) =>
          unnamed.publish(tx, { type: 'probe', key: 'k', payload: {} }),
        ),
      ).rejects.toThrow(InvalidInputError);
      const refused = await inProcess(['reconcile', '--repair', '--entity', 'customer'], env);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toContain('pass --service <name>');
      const named = await recordedCaretaker(orders.database.db, {
        ...options,
        service: 'billing',
      });
      await orders.database.db.transaction((tx) =>
        named.publish(tx, { type: 'probe', key: 'k', payload: {} }),
      );
      const sent = await referrer("SELECT source FROM baton.outbox WHERE type = 'probe'");
      expect(sent.rows).toEqual([{ source: 'billing' }]);
    } finally {
      await referrer(
        "INSERT INTO baton.settings VALUES ('service', 'orders') ON CONFLICT (name) DO NOTHING",
      );
      await referrer("DELETE FROM baton.entity_references WHERE entity = 'ghost'");
      await referrer("DELETE FROM baton.replicas WHERE entity = 'ghost'");
    }
  });
});
