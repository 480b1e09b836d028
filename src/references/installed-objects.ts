import type { Executor } from '../db/executor.ts';
import { derivedName } from '../db/sql.ts';
import { tableSql } from './definitions.ts';
import { referenceObjectNames } from './reference.ts';

/**
 * Baton's objects in the service's own tables — what `install()` creates
 * there and a schema tool may drop: a `synchronize` or a generated
 * migration drops the foreign key it does not know, re-creating a column
 * drops the triggers on it, an operator disables a trigger and forgets it.
 * Read from the declarations recorded in `entities` and
 * `entity_references`, so `baton status` and a caretaker run in another
 * process see them too. `install()` (every service start) restores them.
 */
export interface MissingObject {
  kind: 'foreign key' | 'check trigger' | 'capture trigger' | 'truncate guard';
  name: string;
  table: string;
  /** The declaration it belongs to: `entity product`, `reference orders.productId → product`. */
  declaredBy: string;
  /** Gone, or there but not firing (disabled, or firing only in replica sessions). */
  state: 'missing' | 'disabled';
}

interface Expected {
  kind: MissingObject['kind'];
  name: string;
  table: string;
  declaredBy: string;
  /** Where it lives: a trigger's or a constraint's name on the table. */
  catalog: 'trigger' | 'constraint';
}

/** The objects Baton's recorded declarations need that are missing or disabled. */
export async function readMissingObjects(db: Executor, s: string): Promise<MissingObject[]> {
  const expected = await expectedObjects(db, s);
  if (expected.length === 0) return [];
  const tables = [...new Set(expected.map((e) => e.table))];
  const present = await db.query<{ tab: string; name: string; catalog: string; enabled: string }>(
    `SELECT t.tab, tg.tgname AS name, 'trigger' AS catalog, tg.tgenabled::text AS enabled
       FROM unnest($1::text[], $2::text[]) AS t(tab, ident)
       JOIN pg_trigger tg ON tg.tgrelid = to_regclass(t.ident) AND NOT tg.tgisinternal
     UNION ALL
     SELECT t.tab, c.conname, 'constraint', 'O'
       FROM unnest($1::text[], $2::text[]) AS t(tab, ident)
       JOIN pg_constraint c ON c.conrelid = to_regclass(t.ident) AND c.contype = 'f'`,
    [tables, tables.map(tableSql)],
  );
  const found = new Map(
    present.rows.map((r) => [`${r.catalog}\u0000${r.tab}\u0000${r.name}`, r.enabled]),
  );
  const missing: MissingObject[] = [];
  for (const e of expected) {
    const enabled = found.get(`${e.catalog}\u0000${e.table}\u0000${e.name}`);
    // 'O'/'A' fire in ordinary sessions; 'D' never, 'R' only under session_replication_role = replica.
    const state =
      enabled === undefined
        ? 'missing'
        : enabled === 'D' || enabled === 'R'
          ? 'disabled'
          : undefined;
    if (state) {
      const { catalog: _catalog, ...object } = e;
      missing.push({ ...object, state });
    }
  }
  return missing;
}

async function expectedObjects(db: Executor, s: string): Promise<Expected[]> {
  const entities = await db.query<{ name: string; table_name: string }>(
    `SELECT name, table_name FROM ${s}.entities ORDER BY name`,
  );
  const references = await db.query<{ table_name: string; column_name: string; entity: string }>(
    `SELECT table_name, column_name, entity FROM ${s}.entity_references ORDER BY name`,
  );
  const expected: Expected[] = [];
  for (const e of entities.rows) {
    const declaredBy = `entity ${e.name}`;
    const on = { table: e.table_name, declaredBy, catalog: 'trigger' } as const;
    expected.push(
      { kind: 'capture trigger', name: derivedName(`baton_capture_${e.name}`), ...on },
      { kind: 'truncate guard', name: derivedName(`baton_no_truncate_${e.name}`), ...on },
    );
  }
  for (const r of references.rows) {
    const def = { table: r.table_name, column: r.column_name, entity: r.entity };
    const names = referenceObjectNames(def);
    const declaredBy = `reference ${r.table_name}.${r.column_name} → ${r.entity}`;
    expected.push(
      {
        kind: 'foreign key',
        name: names.constraint,
        table: r.table_name,
        declaredBy,
        catalog: 'constraint',
      },
      {
        kind: 'check trigger',
        name: names.trigger,
        table: r.table_name,
        declaredBy,
        catalog: 'trigger',
      },
    );
  }
  return expected;
}
