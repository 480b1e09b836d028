import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LOYALTY_TABLES, pointsReservation } from '../examples/shop/loyalty-points.ts';
import { type Baton, createBaton, participantClient } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { type FixtureProcess, ProcessGroup } from './fixtures/process-harness.ts';
import { placeOrder, SHOP_TABLES, type ShopInput } from './fixtures/saga-shop.ts';
import { eventually, freshDatabase, SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Real processes, real SIGKILLs, at every boundary of the shop's 3-step saga
 * (local step; points reservation on the loyalty service over HTTP; local
 * step; then confirm — or, when the shop refuses, cancel and undo). Three
 * orchestrator processes share the sagas; each saga kills its process once
 * at its own point; the dead one is restarted and the other takes its sagas
 * over when their leases (1.5 s) expire. In the end every saga is completed
 * or compensated, and no effect was applied twice.
 *
 * A process killed at one saga's point also kills the other saga it was
 * running; if that one had just passed its own point (its commit sent —
 * PostgreSQL finishes it without the client — and the mark not yet
 * written), its point is not reached again when it is taken over. Points left so get a fresh saga in another round, until every
 * point has fired (a point that can no longer be reached fails the test).
 */
const SCRIPT = 'test/fixtures/saga-orchestrator.ts';
const LEASE_MS = 1500;
const INITIAL = 100_000;

// Boundaries that are the same moment for the saga are listed once
// ('after-create' is also 'before-reserve'; the try's record commits with the
// accept step — 'after-try-record' is 'after-accept' when the saga completes).
const COMPLETING_POINTS = [
  'none',
  'in-create',
  'after-create',
  'before-try',
  'after-try',
  'in-accept',
  'after-accept',
  'after-state-completing',
  'before-confirm',
  'after-confirm',
  // the confirms are marked in the statement that completes the saga
  'after-state-completed',
];
const COMPENSATING_POINTS = [
  'none',
  'after-try',
  'after-fail-record',
  'after-state-compensating',
  'before-cancel',
  'after-cancel',
  'after-cancel-mark',
  'in-uncreate',
  'after-uncreate',
  'after-state-compensated',
];

const ROUNDS = 4;

interface Planned {
  id: string;
  /** The point and the saga's kind, without the number: `after-try.reject`. */
  case: string;
  input: ShopInput;
  expect: 'completed' | 'compensated';
  crash: boolean;
}

function plan(): Planned[] {
  const sagas: Planned[] = [];
  let n = 0;
  const add = (point: string, suffix: string, input: ShopInput, expected: Planned['expect']) =>
    sagas.push({
      id: `${++n}.${point}${suffix}`,
      case: `${point}${suffix}`,
      input,
      expect: expected,
      crash: point !== 'none',
    });
  for (const point of COMPLETING_POINTS)
    add(point, '', { customerId: `c${n % 3}`, points: n + 1 }, 'completed');
  for (const point of COMPENSATING_POINTS)
    add(point, '.reject', { customerId: `c${n % 3}`, points: n + 1 }, 'compensated');
  // the try itself is refused (more points than anyone has)
  add('after-try', '.refuse', { customerId: 'c0', points: INITIAL * 10 }, 'compensated');
  add('none', '.refuse', { customerId: 'c1', points: INITIAL * 10 }, 'compensated');
  return sagas;
}

describe('SIGKILLed orchestrators at every saga step boundary', () => {
  let ordersDb: TestDatabase;
  let loyalty: TestService;
  let orders: Baton;
  const group = new ProcessGroup();
  let supervising = false;

  beforeAll(async () => {
    ordersDb = await freshDatabase('saga_crash_orders');
    await ordersDb.db.query(SHOP_TABLES);
    loyalty = await startService('saga_crash_loyalty');
    await loyalty.database.db.query(LOYALTY_TABLES);
    await loyalty.database.db.query(
      `INSERT INTO accounts VALUES ('c0', ${INITIAL}), ('c1', ${INITIAL}), ('c2', ${INITIAL})`,
    );
    loyalty.baton.participant.reservation('points', pointsReservation);
    // The test's own handle on the orders database: it starts sagas, it runs none.
    orders = createBaton({ db: ordersDb.db, service: 'orders' });
    const unused = participantClient({
      name: 'loyalty',
      url: `${loyalty.server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });
    orders.sagas.define(placeOrder(unused));
  });
  afterEach(async () => {
    supervising = false;
    await group.killAll();
  });
  afterAll(async () => {
    supervising = false;
    await group.killAll();
    await loyalty?.stop();
    await ordersDb?.drop();
  });

  function orchestrator(label: string): FixtureProcess {
    return group.add(label, SCRIPT, {
      url: ordersDb.url,
      participantUrl: `${loyalty.server.url}/baton`,
      secret: SECRET,
      label,
      mode: 'crash',
      leaseMs: LEASE_MS,
      concurrency: 2,
    });
  }

  /** Restarts the process every time it dies, until told to stop. */
  async function supervise(p: FixtureProcess): Promise<void> {
    while (supervising) {
      await p.start();
      while (supervising && !(await p.exited(200))) {}
    }
  }

  const state = async (id: string) =>
    (
      await ordersDb.db.query<{ state: string }>('SELECT state FROM baton.sagas WHERE id = $1', [
        id,
      ])
    ).rows[0]?.state;

  async function checkBooks(sagas: Planned[]): Promise<void> {
    const o = ordersDb.db;
    const l = loyalty.database.db;
    const states = new Map(
      (await o.query<{ id: string; state: string }>('SELECT id, state FROM baton.sagas')).rows.map(
        (r) => [r.id, r.state],
      ),
    );
    const orderRows = new Map(
      (
        await o.query<{ id: string; n: number; state: string }>(
          'SELECT id, count(*)::int AS n, max(state) AS state FROM orders GROUP BY id',
        )
      ).rows.map((r) => [r.id, r]),
    );
    const log = (
      await o.query<{ order_id: string; what: string; n: number }>(
        'SELECT order_id, what, count(*)::int AS n FROM order_log GROUP BY 1, 2',
      )
    ).rows;
    const movements = (
      await l.query<{ tx_id: string; n: number; points: number }>(
        `SELECT substr(reference, length('spend:') + 1) AS tx_id, count(*)::int AS n, sum(-points)::int AS points
         FROM movements WHERE kind = 'spend' GROUP BY 1`,
      )
    ).rows;
    const movementOf = new Map(movements.map((m) => [m.tx_id, m]));
    for (const s of sagas) {
      expect(states.get(s.id), `saga ${s.id}`).toBe(s.expect);
      // one order row per saga, in its final state
      expect(orderRows.get(s.id), `order of ${s.id}`).toMatchObject({
        n: 1,
        state: s.expect === 'completed' ? 'placed' : 'cancelled',
      });
      const entries = log.filter((e) => e.order_id === s.id).map((e) => `${e.what}×${e.n}`);
      expect(entries, `order log of ${s.id}`).toEqual([
        s.expect === 'completed' ? 'placed×1' : 'cancelled×1',
      ]);
      if (s.expect === 'completed') {
        expect(movementOf.get(s.id), `movement of ${s.id}`).toEqual({
          tx_id: s.id,
          n: 1,
          points: s.input.points,
        });
      } else {
        expect(movementOf.get(s.id), `no movement for ${s.id}`).toBeUndefined();
      }
    }
    expect(movements.length).toBe(sagas.filter((s) => s.expect === 'completed').length);
    // every hold is released, and each balance is what the confirmed sagas took
    expect((await l.query('SELECT * FROM holds')).rows).toEqual([]);
    const balances = (
      await l.query<{ customer_id: string; balance: number }>(
        'SELECT customer_id, balance FROM accounts ORDER BY 1',
      )
    ).rows;
    for (const { customer_id, balance } of balances) {
      const spent = sagas
        .filter((s) => s.expect === 'completed' && s.input.customerId === customer_id)
        .reduce((sum, s) => sum + s.input.points, 0);
      expect(balance, `balance of ${customer_id}`).toBe(INITIAL - spent);
    }
  }

  /** Runs the sagas on three supervised orchestrators until every one has finished. */
  async function runRound(round: Planned[]): Promise<void> {
    for (const s of round) await orders.sagas.start('place-order', s.input, { id: s.id });
    const processes = ['a', 'b', 'c'].map((x) => orchestrator(`orchestrator-${x}`));
    supervising = true;
    const supervisors = processes.map(supervise);
    try {
      await eventually(
        async () => {
          const r = await ordersDb.db.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM baton.sagas WHERE id = ANY($1) AND state IN ('completed', 'compensated', 'stuck')",
            [round.map((s) => s.id)],
          );
          return r.rows[0]?.n === round.length;
        },
        'every saga finished',
        90_000,
      ).catch((error) => {
        throw new Error(`${(error as Error).message}\n${group.describe()}`);
      });
    } finally {
      supervising = false;
      await Promise.all(supervisors);
      await group.killAll();
    }
  }

  const firedIds = async () =>
    (await ordersDb.db.query<{ saga_id: string }>('SELECT saga_id FROM fault_marks')).rows.map(
      (m) => m.saga_id,
    );

  it('every saga ends completed or compensated; no effect applied twice; balances add up', async () => {
    const sagas: Planned[] = [];
    let round = plan();
    for (let r = 1; r <= ROUNDS && round.length > 0; r++) {
      sagas.push(...round);
      await runRound(round);
      const fired = new Set(await firedIds());
      const reached = new Set(sagas.filter((s) => fired.has(s.id)).map((s) => s.case));
      // a point passed by a collateral kill gets a fresh saga (`<round>-<n>.<point>…`)
      round = round
        .filter((s) => s.crash && !reached.has(s.case))
        .map((s) => ({ ...s, id: `${r + 1}-${s.id}` }));
      if (round.length > 0)
        console.log(`saga-crash: round ${r + 1} for ${round.map((s) => s.case)}`);
    }
    const planned = sagas.filter((s) => s.crash);
    const fired = await firedIds();
    expect(new Set(fired).size, 'each crash point fires at most once').toBe(fired.length);
    expect(
      fired.filter((id) => !planned.some((s) => s.id === id)),
      'no unplanned crash',
    ).toEqual([]);
    const unreached = planned.filter(
      (p) => !planned.some((s) => s.case === p.case && fired.includes(s.id)),
    );
    expect(
      unreached.map((s) => s.case),
      `crash points never reached in ${ROUNDS} rounds`,
    ).toEqual([]);
    await checkBooks(sagas);
  }, 240_000);

  it('a crash between a try and its record, then the deadline passes: the hold is still cancelled', async () => {
    const a = orchestrator('orchestrator-deadline');
    const id = '100.after-try.deadline';
    await a.start();
    await orders.sagas.start(
      'place-order',
      { customerId: 'c2', points: 7 },
      {
        id,
        deadlineMs: 2500,
      },
    );
    const exit = await a.exited(30_000);
    expect(exit?.signal).toBe('SIGKILL');
    // the try went through: points are held for the saga
    expect((await loyalty.database.db.query('SELECT tx_id FROM holds')).rows).toEqual([
      { tx_id: id },
    ]);
    // no worker runs until the deadline has passed
    await eventually(async () => {
      const r = await ordersDb.db.query<{ past: boolean }>(
        'SELECT deadline < now() AS past FROM baton.sagas WHERE id = $1',
        [id],
      );
      return r.rows[0]?.past === true;
    }, 'the deadline passed');
    await a.start();
    await eventually(async () => (await state(id)) === 'compensated', 'the saga compensated');
    const status = await orders.sagas.status(id);
    expect(status.error).toMatch(/deadline passed/);
    expect((await loyalty.database.db.query('SELECT * FROM holds')).rows).toEqual([]);
    const barrier = await loyalty.database.db.query(
      'SELECT op, outcome FROM baton.barrier WHERE tx_id = $1 ORDER BY op',
      [id],
    );
    expect(barrier.rows).toEqual([
      { op: 'cancel', outcome: 'done' },
      { op: 'try', outcome: 'done' },
    ]);
  }, 60_000);
});
