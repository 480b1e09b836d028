import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createBaton,
  httpFeedSource,
  InvalidInputError,
  ownerClient,
  ReferenceViolation,
} from '../src/index.ts';
import { freePort } from '../src/pg.ts';
import type { Reference } from '../src/references/reference.ts';
import { eventually, SECRET } from './helpers.ts';
import {
  CUSTOMERS_DDL,
  count,
  declareCustomer,
  replicaRow,
  waitForReplica,
} from './support/refs-fixtures.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Hostile and mistaken input around references: malformed ids, oversized
 * entity state, entities nobody owns, malformed state events on the feed,
 * and bad declarations. Each gets a clear, typed error and changes nothing.
 */
describe('references: bad input', () => {
  let customers: TestService;
  let orders: TestService;
  let customerRef: Reference;
  let productRef: Reference;
  let ghostRef: Reference;
  let ghostAcceptRef: Reference;
  let offlineRef: Reference;

  beforeAll(async () => {
    [customers, orders] = await Promise.all([startService('customers'), startService('orders')]);
    await customers.database.db.query(CUSTOMERS_DDL);
    await customers.database.db.query('CREATE TABLE products (id integer PRIMARY KEY, title text)');
    declareCustomer(customers);
    customers.baton.entity({ name: 'product', table: 'products', key: 'id', fields: ['title'] });
    await customers.baton.install();

    await orders.database.db.query(
      `CREATE TABLE orders (id serial PRIMARY KEY, customer_id text, product_id integer, note text)`,
    );
    await orders.database.db.query(
      'CREATE TABLE ghosts (id serial PRIMARY KEY, ghost_id text, spook_id text, offline_id text)',
    );
    const feed = orders.consumerOf(customers);
    const owner = orders.ownerClientOf(customers);
    for (const entity of ['customer', 'product', 'ghost', 'spook'])
      orders.baton.replicate({ entity, owner, consumer: feed });
    customerRef = orders.baton.reference({
      table: 'orders',
      column: 'customer_id',
      entity: 'customer',
      onDelete: 'keep',
    });
    productRef = orders.baton.reference({
      table: 'orders',
      column: 'product_id',
      entity: 'product',
      onDelete: 'cascade',
    });
    // Replicated from customers, which owns no such entity (a misconfiguration).
    ghostRef = orders.baton.reference({
      table: 'ghosts',
      column: 'ghost_id',
      entity: 'ghost',
      onDelete: 'cascade',
    });
    ghostAcceptRef = orders.baton.reference({
      table: 'ghosts',
      column: 'spook_id',
      entity: 'spook',
      onDelete: 'cascade',
      onOwnerUnreachable: 'accept',
    });
    // Owned by a service that cannot be reached (nothing listens on its port).
    const nowhere = ownerClient({
      name: 'nowhere',
      url: `http://127.0.0.1:${await freePort()}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    orders.baton.replicate({ entity: 'offline', owner: nowhere, consumer: feed });
    offlineRef = orders.baton.reference({
      table: 'ghosts',
      column: 'offline_id',
      entity: 'offline',
      onDelete: 'cascade',
    });
    await orders.baton.install();
    await orders.startConsumers();
    await customers.database.db.query(
      "INSERT INTO customers (id, name, tier) VALUES ('good', 'G', 'gold')",
    );
    await customers.database.db.query("INSERT INTO products VALUES (7, 'lamp')");
    await waitForReplica(orders, 'customer', 'good', { state: 'ACTIVE' });
    await waitForReplica(orders, 'product', 7, { state: 'ACTIVE' });
  });

  afterAll(async () => {
    await orders?.stop();
    await customers?.stop();
  });

  /** Everything a failed attempt could have touched on the referrer. */
  const referrerState = async () => ({
    orders: await count(orders.database.db, 'SELECT 1 FROM orders'),
    customers: await count(orders.database.db, 'SELECT 1 FROM baton.replica_customer'),
    products: await count(orders.database.db, 'SELECT 1 FROM baton.replica_product'),
    ghosts: await count(orders.database.db, 'SELECT 1 FROM baton.replica_ghost'),
    spooks: await count(orders.database.db, 'SELECT 1 FROM baton.replica_spook'),
    outbox: await count(orders.database.db, 'SELECT 1 FROM baton.outbox'),
  });

  describe('malformed ids', () => {
    const cases: [string, Reference | (() => Reference), string, RegExp][] = [
      ['empty', () => customerRef, '', /not a valid id/],
      ['NUL', () => customerRef, 'a\u0000b', /not a valid id/],
      ['10k characters', () => customerRef, 'x'.repeat(10_000), /not a valid id/],
      ['SQL-ish text', () => customerRef, "'; DROP TABLE orders; --", /unknown to its owner/],
      ['path-ish text', () => customerRef, '../../watermark', /unknown to its owner/],
      ['a non-integer for an integer key', () => productRef, '12abc', /not a valid id/],
      ['an integer out of range', () => productRef, '99999999999999999999', /not a valid id/],
    ];
    for (const [what, refOf, id, message] of cases) {
      it(`${what}: ReferenceViolation; the caller's transaction stays usable; nothing written`, async () => {
        const ref = typeof refOf === 'function' ? refOf() : refOf;
        const before = await referrerState();
        let caught: unknown;
        await orders.database.db.transaction(async (tx) => {
          try {
            await ref.check(tx, id);
          } catch (error) {
            caught = error;
          }
          // The application carries on in the same transaction (like after any ReferenceViolation).
          await tx.query("SELECT 1 FROM orders WHERE note = 'x'");
        });
        expect(caught).toBeInstanceOf(ReferenceViolation);
        expect((caught as ReferenceViolation).message).toMatch(message);
        expect((caught as ReferenceViolation).message.length).toBeLessThan(2_000);
        expect(caught).toMatchObject({ table: 'orders', entity: ref.def.entity });
        expect(await referrerState()).toEqual(before);
        expect(
          await count(orders.database.db, "SELECT 1 FROM pg_tables WHERE tablename = 'orders'"),
        ).toBe(1);
      });
    }

    it('a plain-SQL insert is refused by the trigger with a readable message and the SQLSTATE BR001', async () => {
      const error = await orders.database.db
        .query("INSERT INTO orders (customer_id) VALUES ('nope')")
        .catch((e: unknown) => e as Error & { code?: string });
      expect(error).toMatchObject({ code: 'BR001' });
      expect((error as Error).message).toBe(
        'orders.customer_id refers to customer nope, which is unknown',
      );
    });

    it('the owner endpoint answers a bad id clearly (400) and a non-integer id for an integer key as absent', async () => {
      const client = orders.ownerClientOf(customers);
      await expect(client.lookup('customer', 'x'.repeat(600))).rejects.toThrow(
        /400 .*id must be 1–512 characters without NUL/,
      );
      await expect(client.lookup('product', 'abc')).resolves.toMatchObject({ state: 'absent' });
      await expect(client.lookup('customer', "'; DROP TABLE customers; --")).resolves.toMatchObject(
        {
          state: 'absent',
        },
      );
      await expect(client.lookup('customer', 'a/b?c#d')).resolves.toMatchObject({
        id: 'a/b?c#d',
        state: 'absent',
      });
      expect(
        await count(customers.database.db, "SELECT 1 FROM pg_tables WHERE tablename = 'customers'"),
      ).toBe(1);
    });
  });

  describe('unknown entities', () => {
    it('a lookup of an entity the owner does not own: 404 naming what it owns', async () => {
      const error = await orders
        .ownerClientOf(customers)
        .lookup('ghost', 'x')
        .catch((e: unknown) => e);
      expect((error as Error).message).toMatch(
        /404 BATON_UNKNOWN_ENTITY .*this service owns no entity "ghost" \(it owns: customer, product\)/,
      );
    });

    it('check() against a replicated entity its owner does not own: ReferenceViolation with the 404, also with onOwnerUnreachable accept', async () => {
      const before = await referrerState();
      for (const ref of [ghostRef, ghostAcceptRef]) {
        const error = await orders.database.db
          .transaction((tx) => ref.check(tx, 'g1'))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ReferenceViolation);
        expect((error as Error).message).toMatch(/owns no entity/);
        expect(error).toMatchObject({ reason: 'owner-refused', retryable: false });
      }
      expect(await referrerState()).toEqual(before);
    });

    it('check() while the owner cannot be reached: a ReferenceViolation a caller can tell apart (reason owner-unreachable, retryable)', async () => {
      const error = await orders.database.db
        .transaction((tx) => offlineRef.check(tx, 'o1'))
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ReferenceViolation);
      expect(error).toMatchObject({
        code: 'BATON_REFERENCE_VIOLATION',
        reason: 'owner-unreachable',
        retryable: true,
      });
    });

    it('reference() to an entity that is not replicated: InvalidInputError naming replicate()', () => {
      expect(() =>
        orders.baton.reference({
          table: 'orders',
          column: 'note',
          entity: 'nobody',
          onDelete: 'cascade',
        }),
      ).toThrow(InvalidInputError);
      expect(() =>
        orders.baton.reference({
          table: 'orders',
          column: 'note',
          entity: 'nobody',
          onDelete: 'cascade',
        }),
      ).toThrow(/call replicate\(\{ entity: 'nobody'/);
    });
  });

  it('an entity whose state event would be too large is refused when written, with a clear error', async () => {
    const huge = 'x'.repeat(2 * 1024 * 1024);
    const error = await customers.database.db
      .query("INSERT INTO customers (id, name, address) VALUES ('huge', 'H', $1)", [huge])
      .catch((e: unknown) => e as Error & { code?: string });
    expect(error).toMatchObject({ code: 'BR004' });
    expect((error as Error).message).toMatch(
      /customer huge: its state event would be \d+ bytes, over the limit of 262144/,
    );
    expect(await count(customers.database.db, "SELECT 1 FROM customers WHERE id = 'huge'")).toBe(0);
    // An update that grows a field past the limit is refused the same way; the row keeps its value.
    const grow = await customers.database.db
      .query("UPDATE customers SET address = $1 WHERE id = 'good'", [huge])
      .catch((e: unknown) => e as Error & { code?: string });
    expect(grow).toMatchObject({ code: 'BR004' });
    // A large but acceptable one goes through end to end.
    await customers.database.db.query(
      "INSERT INTO customers (id, name, address) VALUES ('big', 'B', $1)",
      ['y'.repeat(200_000)],
    );
    const big = await waitForReplica(orders, 'customer', 'big', { state: 'ACTIVE' });
    expect((big.fields.address as string).length).toBe(200_000);
  });

  it('malformed baton.entity.* events on the feed become dead letters; the replica is untouched and other keys flow', async () => {
    const bad: [string, unknown][] = [
      ['customer:m1', { entity: 'customer', state: 'active', fields: {}, personal: [] }],
      ['customer:m2', { entity: 'customer', id: 42, state: 'active', fields: {}, personal: [] }],
      ['customer:m3', { entity: 'customer', id: 'm3', state: 'zombie', fields: {}, personal: [] }],
      ['customer:m4', { entity: 'product', id: 'm4', state: 'active', fields: {}, personal: [] }],
      ['customer:m5', { entity: 'customer', id: 'm5', state: 'active', fields: [], personal: [] }],
      ['customer:m6', { entity: 'customer', id: 'm6', state: 'active', fields: {}, personal: 'x' }],
      ['customer:m7', 'not an object'],
      ['product:m8', { entity: 'product', id: 'm8', state: 'active', fields: {}, personal: [] }],
    ];
    await customers.database.db.transaction(async (tx) => {
      for (const [key, payload] of bad) {
        await customers.baton.publish(tx, {
          type: key.startsWith('product') ? 'baton.entity.product' : 'baton.entity.customer',
          key,
          payload,
        });
      }
    });
    await customers.database.db.query(
      "INSERT INTO customers (id, name, tier) VALUES ('after', 'A', 'gold')",
    );
    await waitForReplica(orders, 'customer', 'after', { state: 'ACTIVE' });
    let dead: { key: string; last_error: string }[] = [];
    await eventually(async () => {
      dead = (
        await orders.database.db.query<{ key: string; last_error: string }>(
          "SELECT key, last_error FROM baton.inbox WHERE status = 'dead' AND key LIKE '%:m%' ORDER BY key",
        )
      ).rows;
      return dead.length === bad.length;
    }, 'every malformed event is a dead letter');
    expect(dead.map((d) => d.key)).toEqual(bad.map(([k]) => k).sort());
    const errors = Object.fromEntries(dead.map((d) => [d.key, d.last_error]));
    expect(errors['customer:m1']).toMatch(/malformed customer state event: id must be/);
    for (const e of Object.values(errors)) expect(e).toMatch(/dead after 1 attempt\)$/); // never retried
    expect(errors['customer:m3']).toMatch(/state "zombie" is not active, deleting or deleted/);
    expect(errors['customer:m4']).toMatch(/entity is "product", expected "customer"/);
    expect(errors['customer:m5']).toMatch(/fields must be an object/);
    expect(errors['customer:m6']).toMatch(/personal must be a list/);
    expect(errors['product:m8']).toMatch(
      /product id "m8" is not a valid integer \(the type of this service's references to product\)/,
    );
    for (const id of ['m1', 'm3', 'm4', 'm5', 'm6'])
      expect(await replicaRow(orders, 'customer', id)).toBeUndefined();
  });

  describe('bad declarations: InvalidInputError, nothing installed', () => {
    const entityCases: [string, Record<string, unknown>, RegExp][] = [
      ['a bad name', { name: 'Bad-Name', table: 'customers', key: 'id' }, /entity name "Bad-Name"/],
      ['an empty name', { name: '', table: 'customers', key: 'id' }, /entity name ""/],
      [
        'a table name of three parts',
        { name: 'c2', table: 'a.b.c', key: 'id' },
        /table "a.b.c" is not a table name: it has more than two parts/,
      ],
      [
        'a quote inside an unquoted table name',
        { name: 'c2', table: 'cust"omers', key: 'id' },
        /table "cust\\"omers" is not a table name: a double quote inside an unquoted part/,
      ],
      ['an empty key', { name: 'c2', table: 'customers', key: '' }, /key "" is not a column name/],
      [
        'a key over 63 bytes',
        { name: 'c2', table: 'customers', key: 'é'.repeat(32) },
        /is not a column name: a part is 64 bytes, PostgreSQL keeps at most 63/,
      ],
      [
        'a field with a NUL',
        { name: 'c2', table: 'customers', key: 'id', fields: ['na\u0000me'] },
        /field "na\\u0000me" is not a column name: it contains a NUL character/,
      ],
      ...['__proto__', 'constructor', 'prototype'].map(
        (field): [string, Record<string, unknown>, RegExp] => [
          `a field named ${field} (a key every consumer refuses)`,
          { name: 'c2', table: 'customers', key: 'id', fields: [field] },
          new RegExp(`field named "${field}" cannot be copied`),
        ],
      ),
      [
        'personal not among fields',
        { name: 'c2', table: 'customers', key: 'id', fields: ['name'], personal: ['address'] },
        /personal field "address" is not among its fields \(name\)/,
      ],
      [
        'a bad restrict referrer',
        { name: 'c2', table: 'customers', key: 'id', restrictReferrers: ['orders', ''] },
        /restrict referrer ""/,
      ],
      ['nothing at all', undefined as never, /entity name/],
    ];
    for (const [what, def, message] of entityCases) {
      it(`entity with ${what}`, () => {
        expect(() => customers.baton.entity(def as never)).toThrow(InvalidInputError);
        expect(() => customers.baton.entity(def as never)).toThrow(message);
      });
    }

    it('names are data, never SQL: an entity on a table named "customers; DROP TABLE x" is refused at install as missing, and nothing is dropped', async () => {
      const svc = await startService('decl-sql');
      try {
        await svc.database.db.query('CREATE TABLE x (id text PRIMARY KEY)');
        svc.baton.entity({ name: 'thing', table: 'customers; DROP TABLE x', key: 'id' });
        await expect(svc.baton.install()).rejects.toThrow(/does not exist/);
        expect(await count(svc.database.db, "SELECT 1 FROM pg_class WHERE relname = 'x'")).toBe(1);
      } finally {
        await svc.stop();
      }
    });

    it('entity on a table or column that does not exist: refused at install, nothing installed', async () => {
      const svc = await startService('decl-owner');
      try {
        await svc.database.db.query('CREATE TABLE things (id text PRIMARY KEY)');
        svc.baton.entity({ name: 'thing', table: 'things', key: 'id', fields: ['colour'] });
        await expect(svc.baton.install()).rejects.toThrow(/table "things" has no column "colour"/);
        expect(await count(svc.database.db, 'SELECT 1 FROM baton.entities')).toBe(0);
        expect(
          await count(svc.database.db, "SELECT 1 FROM pg_trigger WHERE tgname LIKE 'baton_%'"),
        ).toBe(0);
      } finally {
        await svc.stop();
      }
    });

    const referenceCases: [string, Record<string, unknown>, RegExp][] = [
      [
        'an unclosed quoted table',
        { table: '"orders', column: 'customer_id', entity: 'customer', onDelete: 'keep' },
        /table "\\"orders" is not a table name: a quoted part is not closed/,
      ],
      [
        'an empty column',
        { table: 'orders', column: '', entity: 'customer', onDelete: 'keep' },
        /column "" is not a column name/,
      ],
      [
        'a bad entity',
        { table: 'orders', column: 'x', entity: 'Cust', onDelete: 'keep' },
        /entity "Cust"/,
      ],
      [
        'an unknown policy',
        { table: 'orders', column: 'x', entity: 'customer', onDelete: 'explode' },
        /onDelete must be one of/,
      ],
      [
        'snapshotColumns with cascade',
        {
          table: 'orders',
          column: 'x',
          entity: 'customer',
          onDelete: 'cascade',
          snapshotColumns: { name: 'note' },
        },
        /snapshotColumns only apply to onDelete 'keep' or 'anonymise'/,
      ],
      [
        'snapshotColumns with bad names',
        {
          table: 'orders',
          column: 'x',
          entity: 'customer',
          onDelete: 'keep',
          snapshotColumns: { name: '' },
        },
        /snapshotColumns column "" is not a column name/,
      ],
      [
        'a bad onOwnerUnreachable',
        {
          table: 'orders',
          column: 'x',
          entity: 'customer',
          onDelete: 'keep',
          onOwnerUnreachable: 'maybe',
        },
        /onOwnerUnreachable must be 'refuse' or 'accept'/,
      ],
    ];
    for (const [what, def, message] of referenceCases) {
      it(`reference with ${what}`, () => {
        expect(() => orders.baton.reference(def as never)).toThrow(InvalidInputError);
        expect(() => orders.baton.reference(def as never)).toThrow(message);
      });
    }

    it('references that cannot work on their table are refused at install, before anything is installed on it', async () => {
      const svc = await startService('decl-referrer');
      try {
        await svc.database.db.query(
          'CREATE TABLE notes (id serial PRIMARY KEY, customer_id text NOT NULL, author text)',
        );
        const cases: [Record<string, unknown>, RegExp][] = [
          [{ onDelete: 'set-null' }, /set-null.*notes\.customer_id is NOT NULL/],
          [
            { onDelete: 'keep', snapshotColumns: { name: 'author_name' } },
            /snapshot column "author_name".*notes/,
          ],
        ];
        for (const [def, message] of cases) {
          const baton = createBaton({ db: svc.database.db, service: 'decl-referrer' });
          baton.replicate({
            entity: 'customer',
            owner: svc.ownerClientOf(customers),
            consumer: baton.consumer({
              name: 'decl-from-customers',
              source: httpFeedSource({
                name: 'customers',
                url: `${customers.server.url}/baton`,
                auth: { type: 'hmac', secret: SECRET },
              }),
            }),
          });
          baton.reference({
            table: 'notes',
            column: 'customer_id',
            entity: 'customer',
            ...def,
          } as never);
          const error = await baton.install().catch((e: unknown) => e);
          expect(error).toBeInstanceOf(InvalidInputError);
          expect((error as Error).message).toMatch(message);
          expect(
            await count(
              svc.database.db,
              "SELECT 1 FROM pg_constraint WHERE conrelid = 'notes'::regclass AND conname LIKE 'baton_%'",
            ),
          ).toBe(0);
          expect(
            await count(
              svc.database.db,
              "SELECT 1 FROM pg_trigger WHERE tgrelid = 'notes'::regclass",
            ),
          ).toBe(0);
          expect(await count(svc.database.db, 'SELECT 1 FROM baton.entity_references')).toBe(0);
        }
      } finally {
        await svc.stop();
      }
    });
  });
});
