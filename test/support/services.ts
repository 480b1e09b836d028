import { type RunningServer, serveHttp } from '../../src/http/node-server.ts';
import { type Baton, createBaton, httpFeedSource } from '../../src/index.ts';
import type { Consumer } from '../../src/messaging/consumer.ts';
import type { Relay } from '../../src/messaging/relay.ts';
import { type OwnerClient, ownerClient } from '../../src/references/owner-client.ts';
import type { TestDatabase } from '../../src/testing/index.ts';
import { freshDatabase, SECRET } from '../helpers.ts';

/**
 * A Baton service for tests: its own cloned database, its relay, and all its
 * endpoints served on loopback. Start consumers after declaring everything.
 */
export interface TestService {
  name: string;
  database: TestDatabase;
  baton: Baton;
  relay: Relay;
  server: RunningServer;
  /** Consumer of another service's feed (created on demand, one per source). */
  consumerOf(other: TestService, options?: { fetchWaitMs?: number }): Consumer;
  /** A client for another service's owner endpoints. */
  ownerClientOf(other: TestService): OwnerClient;
  startConsumers(): Promise<void>;
  stop(): Promise<void>;
}

export async function startService(name: string): Promise<TestService> {
  const database = await freshDatabase(`svc_${name}`);
  const baton = createBaton({ db: database.db, service: name });
  const relay = baton.relay({ pollIntervalMs: 50 });
  const handler = baton.httpHandler({ auth: { type: 'hmac', secrets: [SECRET] } });
  const server = await serveHttp(handler);
  await relay.start();
  const consumers = new Map<string, Consumer>();
  return {
    name,
    database,
    baton,
    relay,
    server,
    consumerOf(other, options = {}) {
      let consumer = consumers.get(other.name);
      if (!consumer) {
        consumer = baton.consumer({
          name: `${name}-from-${other.name}`,
          source: httpFeedSource({
            name: other.name,
            url: `${other.server.url}/baton`,
            auth: { type: 'hmac', secret: SECRET },
          }),
          fetchWaitMs: options.fetchWaitMs ?? 300,
          backoff: { baseMs: 20, maxMs: 200 },
        });
        consumers.set(other.name, consumer);
      }
      return consumer;
    },
    ownerClientOf(other) {
      return ownerClient({
        name: other.name,
        url: `${other.server.url}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      });
    },
    async startConsumers() {
      for (const c of consumers.values()) await c.start();
    },
    async stop() {
      for (const c of consumers.values()) await c.stop();
      await relay.stop();
      await handler.close();
      await server.close();
      await database.drop();
    },
  };
}

/**
 * Whether `referrer` has handled everything `owner` has committed so far:
 * every outbox row sequenced, the subscription's cursor at the owner's last
 * position, nothing pending in the inbox.
 */
export async function caughtUp(owner: TestService, referrer: TestService): Promise<boolean> {
  const o = await owner.database.db.query<{ unsequenced: number; last: string }>(
    `SELECT (SELECT count(*)::int FROM baton.outbox WHERE seq IS NULL) AS unsequenced,
            (SELECT last_seq::text FROM baton.relay_state) AS last`,
  );
  const r = await referrer.database.db.query<{ cursor: string | null; pending: number }>(
    `SELECT (SELECT cursor FROM baton.subscriptions WHERE source = $1) AS cursor,
            (SELECT count(*)::int FROM baton.inbox WHERE status = 'pending') AS pending`,
    [owner.name],
  );
  return (
    o.rows[0]?.unsequenced === 0 &&
    (r.rows[0]?.cursor ?? '0') === o.rows[0]?.last &&
    r.rows[0]?.pending === 0
  );
}
