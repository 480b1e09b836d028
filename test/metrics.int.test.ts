import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, saga, serveHttp, TerminalError } from '../src/index.ts';
import { eventually } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * `/metrics` (issue 13, item 2): every metric named in the issue, in
 * Prometheus' exposition format — parsed here line by line, strictly —
 * with values that follow what the services did: events relayed, handled
 * and dead-lettered, a saga completed, requests refused and served, a
 * caretaker run.
 */
const TOKEN = 'metrics-token-0123456789abcdef';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Exposition {
  types: Map<string, string>;
  samples: Sample[];
}

/** Parses the text format (0.0.4): HELP/TYPE lines, then `name{label="value",…} number`. */
function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type =
      /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1] as string, type[2] as string);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$/.test(line)) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(
      line,
    );
    if (!sample) throw new Error(`not exposition format: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[m[1] as string] = m[2] as string;
    samples.push({ name: sample[1] as string, labels, value: Number(sample[3]) });
  }
  return { types, samples };
}

function value(
  x: Exposition,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return x.samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;
}

let customers: TestService;
let orders: TestService;
let metricsServer: RunningServer;

beforeAll(async () => {
  [customers, orders] = await Promise.all([startService('customers'), startService('orders')]);
  const consumer = orders.consumerOf(customers);
  consumer.subscribe<{ bad?: boolean }>('thing.made', async (event) => {
    if (event.payload.bad) throw new TerminalError('a bad thing');
  });
  orders.baton.sagas.define(
    saga('note', async (ctx, input: { id: string }) => {
      await ctx.step('write', async (tx) => void (await tx.query('SELECT $1::text', [input.id])));
      return { ok: true };
    }),
  );
  await orders.startConsumers();
  metricsServer = await serveHttp(
    orders.baton.metricsHandler({ auth: { type: 'bearer', tokens: [TOKEN] } }),
  );
});
afterAll(async () => {
  await metricsServer?.close();
  await orders?.stop();
  await customers?.stop();
});

async function scrape(server: RunningServer, token = TOKEN) {
  const response = await fetch(`${server.url}/baton/metrics`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    text: await response.text(),
  };
}

describe('/metrics', () => {
  it('refuses a scrape without the operator credential', async () => {
    expect((await scrape(metricsServer, 'wrong-token-0123456789')).status).toBe(401);
  });

  it('answers every metric, with values that follow what the services did', async () => {
    await customers.database.db.transaction((tx) =>
      customers.baton.publish(tx, [
        { type: 'thing.made', key: 'a', payload: {} },
        { type: 'thing.made', key: 'b', payload: {} },
        { type: 'thing.made', key: 'c', payload: { bad: true } },
      ]),
    );
    const worker = orders.baton.sagas.worker({ pollIntervalMs: 20 });
    worker.start();
    const { id } = await orders.baton.sagas.start('note', { id: 'n1' });
    await orders.baton.sagas.waitFor(id, 10_000);
    await worker.stop();
    await orders.baton.caretaker().run();
    // A request refused (no credentials) at orders' Baton endpoints.
    expect((await fetch(`${orders.server.url}/baton/events?after=0`)).status).toBe(401);
    await eventually(async () => {
      const x = parseExposition((await scrape(metricsServer)).text);
      return value(x, 'baton_dead_letters', { subscription: 'orders-from-customers' }) === 1;
    }, 'the dead letter in the metrics');

    const answer = await scrape(metricsServer);
    expect(answer.status).toBe(200);
    expect(answer.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const x = parseExposition(answer.text);
    const expected: Record<string, string> = {
      baton_outbox_backlog_events: 'gauge',
      baton_outbox_oldest_unsequenced_age_seconds: 'gauge',
      baton_relay_events_total: 'counter',
      baton_subscription_lag_events: 'gauge',
      baton_subscription_lag_seconds: 'gauge',
      baton_handler_duration_seconds: 'histogram',
      baton_handler_failures_total: 'counter',
      baton_dead_letters: 'gauge',
      baton_subscription_blocked_keys: 'gauge',
      baton_subscription_stuck: 'gauge',
      baton_sagas: 'gauge',
      baton_sagas_stuck: 'gauge',
      baton_saga_oldest_active_age_seconds: 'gauge',
      baton_restrict_deletes_pending: 'gauge',
      baton_quarantined_orphans: 'gauge',
      baton_caretaker_findings: 'gauge',
      baton_invariant_violations: 'gauge',
      baton_caretaker_last_run_timestamp_seconds: 'gauge',
      baton_caretaker_last_clean_run_timestamp_seconds: 'gauge',
      baton_http_requests_total: 'counter',
      baton_http_request_duration_seconds: 'histogram',
    };
    expect(Object.fromEntries([...x.types].filter(([n]) => n in expected))).toEqual(expected);
    const sub = { subscription: 'orders-from-customers' };
    expect(
      value(x, 'baton_handler_duration_seconds_count', {
        ...sub,
        type: 'thing.made',
        outcome: 'ok',
      }),
    ).toBeGreaterThanOrEqual(2);
    expect(value(x, 'baton_handler_failures_total', { ...sub, outcome: 'dead' })).toBe(1);
    expect(value(x, 'baton_subscription_lag_events', sub)).toBe(0);
    expect(value(x, 'baton_sagas', { state: 'completed' })).toBe(1);
    expect(value(x, 'baton_sagas', { state: 'running' })).toBe(0);
    expect(value(x, 'baton_sagas_stuck')).toBe(0);
    expect(value(x, 'baton_outbox_backlog_events')).toBe(0);
    expect(value(x, 'baton_invariant_violations')).toBe(0);
    const cleanAt = value(x, 'baton_caretaker_last_clean_run_timestamp_seconds') ?? 0;
    expect(Math.abs(cleanAt - Date.now() / 1000)).toBeLessThan(120);
    expect(
      value(x, 'baton_http_requests_total', { route: '/events', method: 'GET', status: '401' }),
    ).toBeGreaterThanOrEqual(1);
    // Every sample carries the service's name.
    expect(x.samples.every((s) => s.labels.service === 'orders')).toBe(true);
  });

  it("counts what the producer's relay numbered and its feed served", async () => {
    const producer = await serveHttp(
      customers.baton.metricsHandler({ auth: { type: 'bearer', tokens: [TOKEN] } }),
    );
    try {
      const x = parseExposition((await scrape(producer)).text);
      expect(value(x, 'baton_relay_events_total')).toBeGreaterThanOrEqual(3);
      expect(
        value(x, 'baton_http_requests_total', { route: '/events', method: 'GET', status: '200' }),
      ).toBeGreaterThanOrEqual(1);
    } finally {
      await producer.close();
    }
  });
});
