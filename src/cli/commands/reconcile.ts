import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  type CaretakerReport,
  type ClientAuth,
  DIFFERENCE_CLASSES,
  type EntityReport,
  type ReferencingRowsReport,
  recordedCaretaker,
} from '../../index.ts';
import { type PgDatabase, schemaIdent } from '../../pg.ts';
import { positiveInteger } from '../arguments.ts';
import { OperationalError, UsageError } from '../cli-errors.ts';
import { requireInstalled, type Target, withDatabase } from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import {
  type CliIo,
  formatBytes,
  formatFields,
  formatTable,
  plural,
  printJson,
  printLines,
} from '../output.ts';
import { terminalProgress } from '../progress.ts';
import { renderMissingObjects } from './status.ts';

/** `baton reconcile` ran, and differences remain that it did not repair (a dry run, or orphans in quarantine). */
export const EXIT_DIFFERENCES_REMAIN = 3;

/**
 * How a command that printed its result asks for a non-zero exit status
 * without printing an error: `run.ts` maps it to `code` (and prints
 * `message`, if any, as `baton: …`).
 */
export class ExitStatus extends Error {
  override name = 'ExitStatus';
  constructor(
    readonly code: number,
    message = '',
  ) {
    super(message);
  }
}

interface ReconcileOptions {
  entity?: string;
  repair?: boolean;
  approve?: boolean;
  acceptAltered?: boolean;
  service?: string;
  examples: number;
  cutTimeout: number;
}

const INVARIANTS_NOTE =
  "invariants run in the service's own caretaker schedule (their checks and remedies are the service's code)";

/** `baton reconcile`: the caretaker run from outside the service, dry by default. */
export function registerReconcile(program: Command, io: CliIo): void {
  program
    .command('reconcile')
    .description(
      "compare this service's replicas with their owners and check its referencing rows; repair by policy with --repair (default: a dry run)",
    )
    .option('--entity <name>', 'only this replicated entity')
    .option('--repair', 'apply the repairs (default: only report what would be done)')
    .option(
      '--approve',
      'repair suspected true orphans now, instead of after a second run confirms them',
    )
    .option(
      '--accept-altered',
      "with --repair: take rows of this service's own tables changed outside Baton that cannot be restored as they now are, and seal them again",
    )
    .option(
      '--service <name>',
      "this service's name, for events a repair publishes (default: the name the service recorded)",
    )
    .option('--examples <n>', 'examples shown per class of difference', positiveInteger, 5)
    .option(
      '--cut-timeout <seconds>',
      "how long to wait for this service's consumer to catch up with each owner",
      positiveInteger,
      10,
    )
    .addHelpText(
      'after',
      `
Run it with the service's database URL. The owners are asked over their Baton
endpoints (recorded when the service installed its references), with the
credentials from the environment: BATON_PRIVATE_KEY_FILE with BATON_KEY_ID and
BATON_SERVICE (signed as the service, per-service keys), BATON_HMAC_SECRET
(a shared secret) or BATON_BEARER_TOKEN. The service's consumers must be running, so the replicas
can catch up with each owner before they are compared.

This service's own tables are checked too (not with --entity): every row
Baton wrote carries a seal; a row changed outside Baton no longer matches it.
--repair restores what the seal or the outbox tells (a barrier outcome, an
idempotency key's state, a version counter, an entity's version); the rest is
reported until an operator takes it as it is (--repair --accept-altered).

Suspected true orphans (replica rows the owner never had) are quarantined,
also in a dry run, and repaired when a second run confirms them, or at once
with --approve. Invariants are not checked by this command:
${INVARIANTS_NOTE}.

Exit codes: 0 nothing is left to repair (no differences, or all repaired);
3 differences remain (a dry run found some, or orphans wait in quarantine);
1 the run failed, or another caretaker of this service is running;
2 the command line or the environment is wrong.`,
    )
    .action(async (local: ReconcileOptions, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      const auth = authFromEnvironment(io.env);
      const status = await withDatabase(options, io, async (db, target) => {
        await requireInstalled(db, options.schema, target);
        await requireReferences(db, options.schema);
        const result = await reconcile(db, options.schema, local, auth, io);
        if (options.json) printJson(io, result.report);
        else printLines(io, renderReconcile(result, target));
        return outcome(result.report);
      });
      if (status.code !== 0) throw status;
    });
}

/** Credentials for the owners' endpoints, from the environment only (never the command line, where `ps` shows them). */
export function authFromEnvironment(env: CliIo['env']): ClientAuth {
  const keyFile = env.BATON_PRIVATE_KEY_FILE;
  if (keyFile) {
    const service = env.BATON_SERVICE;
    const keyId = env.BATON_KEY_ID;
    if (!service || !keyId)
      throw new UsageError(
        'BATON_PRIVATE_KEY_FILE signs as a service with per-service keys: set BATON_SERVICE (the service whose key it is) and BATON_KEY_ID (the id its peers list the key under) too.',
      );
    let privateKey: string;
    try {
      privateKey = readFileSync(keyFile, 'utf8');
    } catch (error) {
      throw new UsageError(
        `cannot read BATON_PRIVATE_KEY_FILE (${(error as Error).message}): give the path of the service's Ed25519 private key (PEM).`,
      );
    }
    return { type: 'keys', service, keyId, privateKey };
  }
  const secret = env.BATON_HMAC_SECRET;
  if (secret) return { type: 'hmac', secret };
  const token = env.BATON_BEARER_TOKEN;
  if (token) return { type: 'bearer', token };
  throw new UsageError(
    "no credentials for the owners' endpoints: set BATON_PRIVATE_KEY_FILE, BATON_KEY_ID and BATON_SERVICE to sign as this service with its own key (per-service keys), or BATON_HMAC_SECRET to the shared secret the owners accept (or BATON_BEARER_TOKEN if they take bearer tokens).",
  );
}

async function requireReferences(db: PgDatabase, schema: string): Promise<void> {
  const r = await db.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [
    `${schemaIdent(schema)}.replicas`,
  ]);
  if (!r.rows[0]?.ok) {
    throw new OperationalError(
      `schema "${schema}" has no references tables (an older Baton migrated it): run \`baton migrate\` first.`,
    );
  }
}

interface ReconcileResult {
  report: CaretakerReport;
  service: string | undefined;
  cutTimeoutSeconds: number;
}

async function reconcile(
  db: PgDatabase,
  schema: string,
  local: ReconcileOptions,
  auth: ClientAuth,
  io: CliIo,
): Promise<ReconcileResult> {
  const { caretaker, targets, service } = await recordedCaretaker(db, {
    schema,
    auth,
    ...(local.service === undefined ? {} : { service: local.service }),
  });
  if (local.repair && service === undefined) {
    throw new UsageError(
      "--repair: this database does not record its service's name, which the events a repair publishes (apologies, delete votes) carry as their source: pass --service <name> (a dry run does not need it).",
    );
  }
  if (local.entity !== undefined) {
    const known = targets.map((t) => t.replication.replica.entity);
    if (!known.includes(local.entity)) {
      throw new UsageError(
        `--entity ${local.entity}: this service keeps no replica of "${local.entity}"; ${
          known.length === 0
            ? 'it replicates no entities at all.'
            : `it replicates ${known.join(', ')}.`
        }`,
      );
    }
  }
  const progress = terminalProgress(io, local.repair ? 'reconcile --repair' : 'reconcile');
  try {
    const report = await caretaker.run({
      repair: local.repair ?? false,
      approve: local.approve ?? false,
      acceptAltered: local.acceptAltered ?? false,
      examples: local.examples,
      cutTimeoutMs: local.cutTimeout * 1000,
      onProgress: (step) => progress.update(step),
      ...(local.entity === undefined ? {} : { entity: local.entity }),
    });
    if (report.skipped) {
      throw new OperationalError(
        `another caretaker of this service is running${await leaseExpiry(db, schema)}: nothing was checked. Try again when it has finished.`,
      );
    }
    return { report, service, cutTimeoutSeconds: local.cutTimeout };
  } finally {
    progress.finish();
  }
}

/** " (its lease ends at …)" from the lease row, for the skipped-run message. */
async function leaseExpiry(db: PgDatabase, schema: string): Promise<string> {
  const r = await db.query<{ value: string }>(
    `SELECT value FROM ${schemaIdent(schema)}.settings WHERE name = 'caretaker_lease'`,
  );
  const until = r.rows[0]?.value.split('|')[1];
  return until ? ` (its lease ends at ${until} at the latest)` : '';
}

/** What remains to be done after the run: differences and referencing-row problems not repaired. */
export function unresolved(report: CaretakerReport): number {
  const t = report.totals;
  const rows = Math.max(
    0,
    t.differences + t.referencingRowProblems + t.integrityProblems - t.repaired,
  );
  return rows + t.missingObjects;
}

function outcome(report: CaretakerReport): ExitStatus {
  const failed = report.entities.filter((e) => e.error !== undefined);
  if (failed.length > 0) {
    return new ExitStatus(
      1,
      `the check of ${failed.map((e) => `${e.entity} (${e.error})`).join(', ')} failed; the other entities were checked.`,
    );
  }
  return new ExitStatus(unresolved(report) > 0 ? EXIT_DIFFERENCES_REMAIN : 0);
}

/** The human report: what was compared, what differs, what was (or would be) done. */
export function renderReconcile(result: ReconcileResult, target: Target): string[] {
  const { report } = result;
  const lines = [
    report.repair
      ? 'baton reconcile --repair: the differences found are repaired by their declared policies.'
      : 'baton reconcile (dry run): NOTHING WAS CHANGED — actions below say what --repair would do. Run `baton reconcile --repair` to apply them.',
  ];
  if (!report.repair) {
    lines.push(
      '(Suspected orphans are still recorded in quarantine, so a later run can confirm them.)',
    );
  }
  lines.push(
    `Service ${result.service ?? '(name not recorded)'}, database ${target.database}@${target.host}:${target.port} — started ${report.startedAt}, took ${formatMs(report.ms)}.`,
  );
  if (report.entities.length === 0) {
    lines.push('', 'No replicated entities: this service references no other service.');
  }
  for (const entity of report.entities) {
    lines.push('', ...renderEntity(entity, result.cutTimeoutSeconds));
  }
  if (report.integrity) lines.push('', ...renderIntegrity(report.integrity));
  if (report.installation) {
    lines.push('', ...renderMissingObjects(report.installation.missing));
    if (report.installation.missing.length > 0)
      lines.push(
        "  this command cannot restore them (it does not have the service's declarations): restart the service, or run its caretaker with repair.",
      );
  }
  lines.push(
    '',
    ...renderTotals(report),
    `Invariants: not checked here; ${INVARIANTS_NOTE}.`,
    '',
    verdict(report),
  );
  return lines;
}

function renderEntity(
  e: EntityReport & { referencingRows: ReferencingRowsReport[] },
  cutTimeoutSeconds: number,
): string[] {
  const lines = [`Entity ${e.entity} (owner ${e.owner})`];
  if (e.error !== undefined) {
    lines.push(`  ! the check failed: ${e.error}`);
    return lines;
  }
  const differences = countDifferences(e.counts);
  lines.push(
    ...formatFields([
      [
        'cut',
        `owner watermark ${e.cut.watermark ?? '-'}, replica cursor ${e.cut.replicaCursor ?? '-'}, ${e.cut.caughtUp ? 'caught up' : 'NOT caught up'}`,
      ],
      ['differences', differences === 0 ? 'none' : `${differences}: ${byClass(e.counts)}`],
      ['healed in flight', String(e.counts['in-flight'])],
      ['repaired', String(e.repaired)],
      ['quarantined', String(e.quarantined)],
      [
        'compared',
        `${plural(e.set.bucketsCompared, 'bucket')} over ${plural(e.set.levels, 'level')} (${e.set.bucketsDiffering} differing), ${formatMs(e.set.ms)}`,
      ],
      ['bytes exchanged', formatBytes(e.bytesExchanged)],
    ]),
  );
  if (!e.cut.caughtUp) {
    lines.push(
      `  ! the replica did not catch up with the owner within ${cutTimeoutSeconds} s: some differences may be events still on their way. Check that the service's consumer is running (\`baton status\`).`,
    );
  }
  if (e.examples.length > 0) {
    const table = formatTable(
      ['ID', 'CLASS', 'OWNER', 'REPLICA', 'ACTION'],
      e.examples.map((f) => [
        f.id,
        f.class,
        `${f.owner.state} v${f.owner.version}`,
        f.replica ? `${f.replica.state.toLowerCase()} v${f.replica.version}` : 'absent',
        f.action,
      ]),
    );
    lines.push('  examples', ...table.map((l) => `    ${l}`));
  }
  for (const r of e.referencingRows) lines.push(`  ${renderReferencingRows(r)}`);
  return lines;
}

function renderIntegrity(integrity: NonNullable<CaretakerReport['integrity']>): string[] {
  const lines = ["This service's own tables"];
  const { tables, feed } = integrity;
  for (const t of tables) {
    if (t.altered === 0) continue;
    lines.push(
      `  ${t.table}: ${plural(t.altered, 'row')} changed outside Baton — ${t.meaning}; ${t.repaired} repaired`,
    );
    for (const e of t.examples) lines.push(`    ${e.row}: ${e.action}`);
  }
  const feedProblems = [
    feed.lastPositionBehind ? "the relay's last position is behind one it handed out" : '',
    feed.missingPositions > 0
      ? `${plural(feed.missingPositions, 'feed position')} without its event`
      : '',
    feed.missingVersions > 0
      ? `${plural(feed.missingVersions, 'key')} whose events skip a version`
      : '',
    feed.countersBehind > 0
      ? `${plural(feed.countersBehind, 'counter')} behind a version its key issued`
      : '',
  ].filter(Boolean);
  if (feedProblems.length > 0) {
    lines.push(`  outbox: ${feedProblems.join('; ')}; ${feed.repaired} repaired`);
    for (const e of feed.examples) lines.push(`    ${e}`);
  }
  if (lines.length === 1) lines.push('  all rows as Baton wrote them');
  return lines;
}

function renderReferencingRows(r: ReferencingRowsReport): string {
  const problems = [
    r.dangling > 0 ? `${r.dangling} with no replica entry` : '',
    r.policyNotApplied > 0 ? `${r.policyNotApplied} whose delete policy did not run` : '',
    r.restrictViolations > 0
      ? `${r.restrictViolations} restrict reference(s) to deleted entities (not repairable here: the delete bypassed the protocol)`
      : '',
  ].filter(Boolean);
  if (problems.length === 0) return `referencing rows ${r.reference}: all valid`;
  return `referencing rows ${r.reference}: ${problems.join(', ')}; ids e.g. ${r.examples.join(', ')}; ${r.repaired} repaired`;
}

function renderTotals(report: CaretakerReport): string[] {
  const t = report.totals;
  return [
    'Totals',
    ...formatFields([
      ['differences', t.differences === 0 ? 'none' : `${t.differences}: ${byClass(t.byClass)}`],
      ['referencing rows', `${t.referencingRowProblems} with problems`],
      ['own tables', `${t.integrityProblems} problems`],
      ["Baton's keys, triggers", `${t.missingObjects} missing or disabled`],
      ['repaired', String(t.repaired)],
      ['quarantined', String(t.quarantined)],
      ['bytes exchanged', formatBytes(t.bytesExchanged)],
      ['time', formatMs(report.ms)],
    ]),
  ];
}

function verdict(report: CaretakerReport): string {
  const left = unresolved(report);
  if (report.entities.some((e) => e.error !== undefined)) {
    return 'Result: some entities could not be checked (see above); exit status 1.';
  }
  if (left === 0) return 'Result: consistent — nothing left to repair.';
  if (!report.repair) {
    return `Result: ${plural(left, 'problem')} found; run \`baton reconcile --repair\` to repair ${left === 1 ? 'it' : 'them'} (add --approve to repair suspected orphans without waiting for a second confirmation).`;
  }
  return `Result: ${plural(left, 'problem')} left: suspected orphans wait in quarantine for a second confirmation (or --approve), and restrict violations need a decision by hand. Exit status ${EXIT_DIFFERENCES_REMAIN}.`;
}

function countDifferences(counts: EntityReport['counts']): number {
  return DIFFERENCE_CLASSES.filter((c) => c !== 'in-flight').reduce((n, c) => n + counts[c], 0);
}

function byClass(counts: EntityReport['counts']): string {
  return DIFFERENCE_CLASSES.filter((c) => c !== 'in-flight' && counts[c] > 0)
    .map((c) => `${counts[c]} ${c}`)
    .join(', ');
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}
