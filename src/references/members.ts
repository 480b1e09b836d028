import { quoteIdent, quoteLiteral } from '../db/sql.ts';
import type { EntityColumns } from './entity-capture.ts';
import { versionsTableSql } from './entity-capture.ts';
import { fieldsHashSql, pinnedSetLocal } from './state-form.ts';

/**
 * Where a side's members come from, as SQL. It is trusted: built by Baton
 * from declared (validated, quoted) names, never from a request.
 *
 * @example
 * { sql: `SELECT id::text AS id, version, hashtextextended(state, 3) AS content FROM replica` }
 */
export interface MemberSource {
  /**
   * A SELECT with one row per member and the columns `id` (text: an owner's
   * `bigint` id and a replica's `text` id compare equal), `version` (an
   * integer, never NULL) and `content` (a bigint hash of whatever else must
   * be equal — state and fields — or NULL). Both sides of a reconciliation
   * must compute equal content for equal members.
   */
  sql: string;
  /**
   * Optional cheaper form for scans that keep a few buckets (the levels below
   * the whole-set digest, member listings): the same members, with what a
   * whole-set scan joins looked up per row by index instead (10,000,000
   * owner rows, 1,600 of 65,536 buckets: 1.9 s instead of 12 s for the hash
   * join). A filter on the members' id is pushed into it by PostgreSQL.
   */
  subsetSql?: string;
  /** Statements to run first in each scan's transaction (e.g. `SET LOCAL` of pinned settings). */
  setupSql?: string;
}

/*
 * A member's content is a hash of what decides how a referrer treats the id:
 * its state (active, deleting: no new references, deleted) and, while it
 * lives, its fields and which of them are personal (what anonymise removes).
 *
 * Built from 64-bit integer hashes chained by seed, not from one text
 * (`hashtextextended(letter || fields || personal)` was): a whole-set digest
 * computes it for every row, and the text form cost ~0.35 µs a row — 3.4 of
 * the 12 s a 10,000,000-row replica digest took (bench/README.md,
 * "reconcile"). An empty personal list — the common case — hashes to a
 * constant PostgreSQL folds at plan time.
 */

/**
 * SQL: `hashint8extended` of all 64 bits of `value`. PostgreSQL's
 * `hashint8extended` folds its argument to 32 bits (low XOR high half)
 * before hashing, so two values with equal folds would hash alike for every
 * seed; each half is hashed on its own instead (both non-negative, so each
 * fold is the half itself).
 */
export function int8HashSql(value: string, seed: string): string {
  return `hashint8extended(((${value}) >> 32) & 4294967295, hashint8extended((${value}) & 4294967295, ${seed}))`;
}

/** The state codes the content hash takes: the same on both sides. */
export const LIVE_STATE_CODE = { active: 1, deleting: 2 } as const;

/**
 * SQL: a live member's content hash, from its state code (a bigint
 * expression: `LIVE_STATE_CODE`), its fields hash (a bigint) and its
 * personal fields (a text[]).
 */
export function liveContentSql(stateCode: string, fieldsHash: string, personal: string): string {
  const personalHash = `CASE WHEN cardinality(${personal}) = 0 THEN hashtextextended('[]', 3)
    ELSE hashtextextended(array_to_json(${personal})::text, 3) END`;
  return int8HashSql(
    `(${fieldsHash})::bigint`,
    `hashint8extended((${stateCode})::bigint, ${personalHash})`,
  );
}

/** SQL: a deleted member's content hash (its fields are not compared: anonymise rewrites a replica's). */
export const DELETED_CONTENT_SQL = `hashtextextended('D', 3)`;

/**
 * An owner's members: every live row of its table — its key, the version
 * of its latest state event (0 if it was never announced: written with the
 * trigger off), its state (deleting while a coordinated delete fences it)
 * and its fields — and every deleted id (its tombstone's version). Scans run
 * under the pinned settings, so fields hash as the state events carry them.
 *
 * The whole-set scan joins the table with the versions table on the key (one
 * pass over each); scans that keep a few buckets look each row's version and
 * fence up by index instead.
 */
export function ownerMemberSource(
  o: EntityColumns & {
    entity: string;
    keyColumn: string;
    /** The declared personal fields, in the order the state events list them. */
    personal: readonly string[];
    schemaSql: string;
  },
): MemberSource {
  const s = o.schemaSql;
  const key = `t.${quoteIdent(o.keyColumn)}`;
  const versions = versionsTableSql(s, o.entity);
  const entity = `'${o.entity}'`;
  const fields = fieldsHashSql(o.fields, 't', s);
  const personal = `ARRAY[${o.personal.map(quoteLiteral).join(', ')}]::text[]`;
  // Deleted ids: those with a tombstone (what a lookup answers) and no live row — found
  // through the versions table, which has the key's type, so the anti-join uses the index.
  const deleted = `
    SELECT tb.id, tb.version, ${DELETED_CONTENT_SQL} AS content
    FROM ${versions} v
    JOIN ${s}.tombstones tb ON tb.entity = ${entity} AND tb.id = (v.id)::text
    WHERE NOT EXISTS (SELECT 1 FROM ${o.table} t WHERE ${key} = v.id)`;
  const live = `
    SELECT (${key})::text AS id, coalesce(v.version, 0) AS version,
           ${liveContentSql(`CASE WHEN f.id IS NULL THEN ${LIVE_STATE_CODE.active} ELSE ${LIVE_STATE_CODE.deleting} END`, fields, personal)} AS content
    FROM ${o.table} t
    LEFT JOIN ${versions} v ON v.id = ${key}
    LEFT JOIN (SELECT id FROM ${s}.delete_fences WHERE entity = ${entity} AND state = 'pending') f
      ON f.id = (${key})::text`;
  const liveByIndex = `
    SELECT (${key})::text AS id,
           coalesce((SELECT v.version FROM ${versions} v WHERE v.id = ${key}), 0) AS version,
           ${liveContentSql(
             `CASE WHEN EXISTS (SELECT 1 FROM ${s}.delete_fences f WHERE f.entity = ${entity}
                                AND f.id = (${key})::text AND f.state = 'pending')
              THEN ${LIVE_STATE_CODE.deleting} ELSE ${LIVE_STATE_CODE.active} END`,
             fields,
             personal,
           )} AS content
    FROM ${o.table} t`;
  return {
    sql: `${live} UNION ALL ${deleted}`,
    subsetSql: `${liveByIndex} UNION ALL ${deleted}`,
    setupSql: pinnedSetLocal(),
  };
}
