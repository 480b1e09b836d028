import { approveAllQuarantined, approveQuarantined } from '../caretaker/quarantine.ts';
import { readCaretakerStatus } from '../caretaker/status.ts';
import { InvalidInputError } from '../core/errors.ts';
import {
  readReferenceTablesStatus,
  readReplicaCounts,
  referencesInstalled,
} from '../references/status.ts';
import { html } from './html.ts';
import { actionButton, type PageContext, type PageResult, state, table, when } from './layout.ts';

/**
 * Both sides of this service's references: the replicas it holds of other
 * services' entities, the restrict deletes of its own entities waiting for
 * votes, and suspected orphans in quarantine (approve to have the next
 * repairing caretaker run repair them).
 */
export async function referencesPage(ctx: PageContext): Promise<PageResult> {
  const { db, schemaSql: s } = ctx;
  if (!(await referencesInstalled(db, s)))
    return {
      title: 'References',
      body: html`<p class="muted">The reference tables are not installed here.</p>`,
    };
  const replicas = await readReplicaCounts(db, s);
  const tables = await readReferenceTablesStatus(db, s);
  const caretaker = await readCaretakerStatus(db, s);
  const done = ctx.url.searchParams.get('done');

  const replicaTable = table(
    ['entity', 'owner', 'subscription', 'rows by state'],
    replicas.map((r) => [
      r.entity,
      r.owner,
      r.subscription,
      Object.entries(r.states).map(([name, n]) => html`${state(name)} ${n} `),
    ]),
    'No replicas: this service references no other service’s entities.',
  );
  const pending = table(
    ['entity', 'id', 'version', 'requested', 'voted', 'waiting for'],
    tables.pendingDeletes.items.map((p) => [
      p.entity,
      html`<span class="mono">${p.id}</span>`,
      p.version,
      when(p.requestedAt),
      p.voted.join(', ') || '—',
      p.waitingFor.join(', ') || '—',
    ]),
    'No restrict deletes waiting.',
  );
  const quarantine = table(
    ['entity', 'id', 'confirmations', 'first seen', 'last seen', ''],
    caretaker.quarantine.items.map((q) => [
      q.entity,
      html`<span class="mono">${q.id}</span>`,
      q.confirmations,
      when(q.firstSeen),
      when(q.lastSeen),
      q.approved
        ? html`${state('ok')} approved: repaired by the next repairing run`
        : actionButton(ctx, '/quarantine/approve', 'Approve repair', {
            fields: { entity: q.entity, id: q.id },
          }),
    ]),
    'Nothing in quarantine.',
  );
  const missing = tables.missingObjects.length
    ? html`<h2>Missing or disabled objects</h2>${table(
        ['object', 'kind', 'table', 'declared by', 'state'],
        tables.missingObjects.map((m) => [m.name, m.kind, m.table, m.declaredBy, m.state]),
        '',
      )}<p class="muted">A schema tool dropped or disabled Baton’s keys or triggers; a repairing caretaker run restores them.</p>`
    : '';
  return {
    title: 'References',
    notice:
      done === 'approved'
        ? { kind: 'ok', text: 'Approved: the next repairing caretaker run repairs it.' }
        : undefined,
    body: html`<h2>Replicas held here</h2>${replicaTable}
<h2>Restrict deletes waiting for votes (${tables.pendingDeletes.total})</h2>${pending}
<h2>Quarantine (${caretaker.quarantine.total})</h2><p class="muted">Replica rows the owner has never heard of. Repaired once a second repairing run confirms them, or once approved.${caretaker.quarantine.total > caretaker.quarantine.items.length ? ` The oldest ${caretaker.quarantine.items.length} are listed.` : ''}</p>${quarantine}${caretaker.quarantine.total > 1 ? html`<p>${actionButton(ctx, '/quarantine/approve-all', `Approve all ${caretaker.quarantine.total}`)}</p>` : ''}
<h2>Policy actions</h2><p>${tables.policyActions.total} taken, ${tables.policyActions.rowsAffected} rows affected, ${tables.policyActions.apologies} apologies (on references that slipped through).</p>${missing}`,
  };
}

export async function approveQuarantineAction(
  ctx: PageContext,
  form: URLSearchParams,
): Promise<PageResult> {
  const entity = form.get('entity');
  const id = form.get('id');
  if (!entity || !id)
    throw new InvalidInputError('approve needs the entity and the id of the quarantined row.');
  await approveQuarantined(ctx.db, ctx.schemaSql, entity, id);
  return { redirect: '/references?done=approved' };
}

export async function approveAllQuarantineAction(ctx: PageContext): Promise<PageResult> {
  await approveAllQuarantined(ctx.db, ctx.schemaSql);
  return { redirect: '/references?done=approved-all' };
}
