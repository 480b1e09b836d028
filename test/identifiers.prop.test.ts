import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { FORBIDDEN_KEYS } from '../src/core/json-safety.ts';
import { quoteIdent } from '../src/db/sql.ts';
import { type OnDeletePolicy, ReferenceViolation } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * Names as the tools people use write them — TypeORM's and Drizzle's quoted
 * camelCase, Prisma's "User", reserved words, spaces, quotes, dots, dollar
 * and percent signs, non-Latin letters, names of 63 bytes — for every name a
 * declaration takes: the owner's schema, table, key and fields, the
 * referrer's schema, table, column and snapshot column. Whatever the names,
 * the entity replicates, a write is checked, a delete applies its policy,
 * and a caretaker run after quiescence finds nothing.
 */

const TRICKY = [
  'order',
  'user',
  'select',
  'group',
  'table',
  'User',
  'userId',
  'firstName',
  'First Name',
  "it's",
  'say "hi"',
  'a.b',
  '$fn$',
  '$baton$',
  '100%',
  'back\\slash',
  'é',
  '日本',
  'x'.repeat(63),
  'é'.repeat(31),
  // keys every JSON consumer refuses: refused as field names when the entity is declared
  '__proto__',
  'constructor',
  'prototype',
];
const bytes = (s: string) => Buffer.byteLength(s);
const name = fc
  .oneof(
    fc.constantFrom(...TRICKY),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }),
    fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_ ]{0,20}$/),
  )
  .filter((s) => s.length > 0 && !s.includes('\u0000') && bytes(s) <= 63);

/** How a declaration writes a table name: a part in double quotes only when it must be. */
function tableText(schema: string | undefined, table: string): string {
  const part = (p: string) => (/[."]/.test(p) ? `"${p.replaceAll('"', '""')}"` : p);
  return schema === undefined ? part(table) : `${part(schema)}.${part(table)}`;
}
const tableSql = (schema: string | undefined, table: string) =>
  schema === undefined ? quoteIdent(table) : `${quoteIdent(schema)}.${quoteIdent(table)}`;

const POLICIES: OnDeletePolicy[] = ['cascade', 'set-null', 'keep', 'anonymise'];

const names = fc
  .record({
    ownerSchema: fc.option(name, { nil: undefined }),
    ownerTable: name,
    key: name,
    field: name,
    personal: name,
    refSchema: fc.option(name, { nil: undefined }),
    refTable: name,
    column: name,
    snapshot: name,
    policy: fc.constantFrom(...POLICIES),
  })
  .filter((n) => n.field !== n.key && n.personal !== n.key && n.personal !== n.field)
  .filter((n) => n.snapshot !== n.column && n.column !== 'id' && n.snapshot !== 'id');

let customers: TestService | undefined;
let orders: TestService | undefined;
afterEach(async () => {
  await orders?.stop();
  await customers?.stop();
  orders = customers = undefined;
});

describe('names exactly as in the catalog, whatever they are', () => {
  it('replicate, check on write, apply the delete policy and reconcile clean', async () => {
    await fc.assert(
      fc.asyncProperty(names, async (n) => {
        await orders?.stop();
        await customers?.stop();
        customers = await startService('idents_owner');
        orders = await startService('idents_referrer');
        const owner = customers.database.db;
        const referrer = orders.database.db;
        const ownerTable = tableSql(n.ownerSchema, n.ownerTable);
        const refTable = tableSql(n.refSchema, n.refTable);
        if (n.ownerSchema !== undefined)
          await owner.query(`CREATE SCHEMA ${quoteIdent(n.ownerSchema)}`);
        await owner.query(
          `CREATE TABLE ${ownerTable} (${quoteIdent(n.key)} text PRIMARY KEY, ${quoteIdent(n.field)} text, ${quoteIdent(n.personal)} text)`,
        );
        const declare = () =>
          customers?.baton.entity({
            name: 'thing',
            table: tableText(n.ownerSchema, n.ownerTable),
            key: n.key,
            fields: [n.field, n.personal],
            personal: [n.personal],
          });
        const unsafe = [n.field, n.personal].find((f) => FORBIDDEN_KEYS.has(f));
        if (unsafe !== undefined) {
          // Copied, it would dead-letter every state event: refused now, naming it.
          expect(declare).toThrow(new RegExp(`field named "${unsafe}" cannot be copied`));
          return;
        }
        declare();
        await customers.baton.install();

        if (n.refSchema !== undefined)
          await referrer.query(`CREATE SCHEMA ${quoteIdent(n.refSchema)}`);
        await referrer.query(
          `CREATE TABLE ${refTable} (id serial PRIMARY KEY, ${quoteIdent(n.column)} text, ${quoteIdent(n.snapshot)} text)`,
        );
        orders.baton.replicate({
          entity: 'thing',
          owner: orders.ownerClientOf(customers),
          consumer: orders.consumerOf(customers),
        });
        const keeps = n.policy === 'keep' || n.policy === 'anonymise';
        const ref = orders.baton.reference({
          table: tableText(n.refSchema, n.refTable),
          column: n.column,
          entity: 'thing',
          onDelete: n.policy,
          ...(keeps ? { snapshotColumns: { [n.field]: n.snapshot } } : {}),
        });
        await orders.baton.install();
        await orders.startConsumers();

        await owner.query(
          `INSERT INTO ${ownerTable} VALUES ('k1', 'v1', 'p1'), ('k2', 'v2', 'p2')`,
        );
        await referrer.transaction(async (tx) => {
          await ref.check(tx, 'k1');
          await tx.query(`INSERT INTO ${refTable} (${quoteIdent(n.column)}) VALUES ('k1')`);
        });
        const refused = await referrer
          .query(`INSERT INTO ${refTable} (${quoteIdent(n.column)}) VALUES ('nope')`)
          .catch((e: unknown) => orders?.baton.referenceError(e));
        expect(refused, 'the check trigger refuses an unknown id').toBeInstanceOf(
          ReferenceViolation,
        );
        expect(refused).toMatchObject({
          table: tableText(n.refSchema, n.refTable),
          column: n.column,
        });

        await owner.query(
          `UPDATE ${ownerTable} SET ${quoteIdent(n.field)} = 'v1b' WHERE ${quoteIdent(n.key)} = 'k1'`,
        );
        const replica = async (id: string) =>
          (
            await referrer.query<{ state: string; fields: Record<string, unknown> }>(
              'SELECT state, fields FROM baton.replica_thing WHERE id = $1',
              [id],
            )
          ).rows[0];
        await eventually(
          async () => (await replica('k1'))?.fields[n.field] === 'v1b',
          'the update replicated',
        );

        await owner.query(`DELETE FROM ${ownerTable} WHERE ${quoteIdent(n.key)} = 'k1'`);
        await eventually(
          async () => (await replica('k1'))?.state === 'DELETED',
          'the delete replicated',
        );
        const rows = (
          await referrer.query<Record<string, string | null>>(
            `SELECT ${quoteIdent(n.column)} AS ref, ${quoteIdent(n.snapshot)} AS snap FROM ${refTable}`,
          )
        ).rows;
        const expected = {
          cascade: [],
          'set-null': [{ ref: null, snap: null }],
          keep: [{ ref: 'k1', snap: 'v1b' }],
          anonymise: [{ ref: 'k1', snap: 'v1b' }],
        }[n.policy as 'cascade'];
        expect(rows, `${n.policy} applied`).toEqual(expected);

        const report = await orders.baton.caretaker().run();
        expect(report.totals.differences, JSON.stringify(report.totals)).toBe(0);
        expect(report.totals.referencingRowProblems).toBe(0);
      }),
      // A failing run ends the property at once: shrinking through 20 s waits would outlast the timeout.
      { numRuns: 12, endOnFailure: true },
    );
  }, 240_000);
});
