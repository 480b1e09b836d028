import { InvalidInputError } from '../core/errors.ts';
import { FORBIDDEN_KEYS } from '../core/json-safety.ts';
import { checkColumnName, parseTableName, tableNameSql } from '../db/sql.ts';

/** What happens to referencing rows when the referenced entity is deleted. */
export const ON_DELETE_POLICIES = ['cascade', 'restrict', 'set-null', 'keep', 'anonymise'] as const;
export type OnDeletePolicy = (typeof ON_DELETE_POLICIES)[number];

/** Owner side: a table this service owns and announces to others. */
export interface EntityDefinition {
  /** Entity name, e.g. `customer` (letters, digits, `_`). */
  name: string;
  /**
   * The owning table, optionally schema-qualified (`public.customers`), each
   * part exactly as in the catalog (`userProfile` is "userProfile"); quote a
   * part with double quotes only if it holds a dot or a double quote.
   */
  table: string;
  /** Its primary-key column. */
  key: string;
  /** Columns others may copy into their replicas (snapshots). */
  fields?: readonly string[];
  /** Which of `fields` are personal data (removed by `anonymise`). */
  personal?: readonly string[];
  /** Services holding `restrict` references to it: deletes then ask them first (fence → drain → finalise). */
  restrictReferrers?: readonly string[];
}

/** Referrer side: a column pointing at another service's entity. */
export interface ReferenceDefinition {
  /** The referencing table and column, e.g. `orders` / `customer_id`. */
  table: string;
  column: string;
  /** The referenced entity's name, as its owner declared it. */
  entity: string;
  onDelete: OnDeletePolicy;
  /** For `keep`/`anonymise`: copy snapshot fields into these columns of the referencing row on delete. */
  snapshotColumns?: Readonly<Record<string, string>>;
  /** When the owner cannot be asked about an id the replica has never seen: refuse the write (default), or accept it and verify later. */
  onOwnerUnreachable?: 'refuse' | 'accept';
}

const NAME = /^[a-z][a-z0-9_]{0,50}$/;
/** As `createBaton`'s `service`: the name a referrer signs its votes with. */
const SERVICE = /^[A-Za-z0-9_.-]{1,100}$/;

export function validateEntity(def: EntityDefinition): Required<EntityDefinition> {
  if (!NAME.test(def?.name ?? '')) {
    throw new InvalidInputError(
      `entity name ${JSON.stringify(def?.name)} must be lower-case letters, digits or '_' (max 51), starting with a letter.`,
    );
  }
  parseTableName(def.table, `entity ${def.name}: table`);
  checkColumnName(def.key, `entity ${def.name}: key`);
  const fields = [...(def.fields ?? [])];
  const personal = [...(def.personal ?? [])];
  for (const f of fields) {
    checkColumnName(f, `entity ${def.name}: field`);
    // A field's name is a key of every state event's `fields`, and every consumer refuses these keys.
    if (FORBIDDEN_KEYS.has(f))
      throw new InvalidInputError(
        `entity ${def.name}: a field named "${f}" cannot be copied — it would be a key of every state event, and consumers refuse "${[...FORBIDDEN_KEYS].join('", "')}" as keys (prototype pollution). Rename the column, or copy it through a view or generated column with another name.`,
      );
  }
  if (new Set(fields).size !== fields.length)
    throw new InvalidInputError(
      `entity ${def.name}: fields lists a column twice (${fields.join(', ')}).`,
    );
  for (const p of personal) {
    if (!fields.includes(p))
      throw new InvalidInputError(
        `entity ${def.name}: personal field "${p}" is not among its fields (${fields.join(', ')}).`,
      );
  }
  const restrictReferrers = [...(def.restrictReferrers ?? [])];
  for (const r of restrictReferrers) {
    // A name no service can have would keep every delete pending forever.
    if (typeof r !== 'string' || !SERVICE.test(r))
      throw new InvalidInputError(
        `entity ${def.name}: restrict referrer ${JSON.stringify(r)} is not a service name (1–100 letters, digits, '.', '_' or '-').`,
      );
  }
  if (new Set(restrictReferrers).size !== restrictReferrers.length)
    throw new InvalidInputError(
      `entity ${def.name}: restrictReferrers lists a service twice (${restrictReferrers.join(', ')}).`,
    );
  return { name: def.name, table: def.table, key: def.key, fields, personal, restrictReferrers };
}

export function validateReference(def: ReferenceDefinition): Required<ReferenceDefinition> {
  parseTableName(def?.table, 'reference: table');
  checkColumnName(def.column, `reference ${def.table}: column`);
  if (!NAME.test(def.entity ?? ''))
    throw new InvalidInputError(
      `reference ${def.table}.${def.column}: entity ${JSON.stringify(def.entity)} is not a valid entity name.`,
    );
  if (!ON_DELETE_POLICIES.includes(def.onDelete)) {
    throw new InvalidInputError(
      `reference ${def.table}.${def.column}: onDelete must be one of ${ON_DELETE_POLICIES.join(', ')} (got ${JSON.stringify(def.onDelete)}).`,
    );
  }
  const snapshotColumns = { ...(def.snapshotColumns ?? {}) };
  for (const [field, column] of Object.entries(snapshotColumns)) {
    checkColumnName(field, `reference ${def.table}.${def.column}: snapshotColumns field`);
    checkColumnName(column, `reference ${def.table}.${def.column}: snapshotColumns column`);
  }
  if (
    Object.keys(snapshotColumns).length > 0 &&
    def.onDelete !== 'keep' &&
    def.onDelete !== 'anonymise'
  ) {
    throw new InvalidInputError(
      `reference ${def.table}.${def.column}: snapshotColumns only apply to onDelete 'keep' or 'anonymise'.`,
    );
  }
  const onOwnerUnreachable = def.onOwnerUnreachable ?? 'refuse';
  if (onOwnerUnreachable !== 'refuse' && onOwnerUnreachable !== 'accept') {
    throw new InvalidInputError(
      `reference ${def.table}.${def.column}: onOwnerUnreachable must be 'refuse' or 'accept'.`,
    );
  }
  return { ...def, snapshotColumns, onOwnerUnreachable };
}

/** A declared table name (validated at declaration) → quoted SQL; a bare name stays unqualified (search_path). */
export function tableSql(table: string): string {
  return tableNameSql(parseTableName(table, 'table'));
}

export function referenceName(def: Pick<ReferenceDefinition, 'table' | 'column'>): string {
  return `${def.table}.${def.column}`;
}

/** The payload of an entity state event (`baton.entity.<name>`). */
export interface EntityState {
  entity: string;
  id: string;
  state: 'active' | 'deleting' | 'deleted';
  fields: Record<string, unknown>;
  personal: string[];
}

/** What the owner answers to a point lookup. */
export type EntityLookup =
  | (EntityState & { version: number })
  | {
      entity: string;
      id: string;
      state: 'absent';
      version: 0;
      fields: Record<string, never>;
      personal: string[];
    };

export function entityEventType(entity: string): string {
  return `baton.entity.${entity}`;
}
