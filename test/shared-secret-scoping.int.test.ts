import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authHeaders,
  type Baton,
  createBaton,
  participantClient,
  type RunningServer,
  serveHttp,
} from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';

/*
 * What holds even with one shared secret (security review, issue 12, item
 * 1): a confirm naming another resource than its try finds nothing reserved
 * there, and a captured action sent with another Idempotency-Key is refused
 * (the key is signed). Both were accepted before.
 */
let database: TestDatabase;
let loyalty: Baton;
let server: RunningServer;
const ran: string[] = [];
const auth = { type: 'hmac', secret: SECRET } as const;

beforeAll(async () => {
  database = await freshDatabase('shared_secret_scoping');
  loyalty = createBaton({ db: database.db, service: 'loyalty' });
  await loyalty.migrate();
  for (const name of ['points', 'seats'])
    loyalty.participant.reservation(name, {
      try: async () => void ran.push(`${name}:try`),
      confirm: async () => void ran.push(`${name}:confirm`),
      cancel: async () => void ran.push(`${name}:cancel`),
    });
  loyalty.participant.action('refund', { run: async (_tx, body) => body });
  server = await serveHttp(loyalty.httpHandler({ auth: { type: 'hmac', secrets: [SECRET] } }));
});
afterAll(async () => {
  await server?.close();
  await database?.drop();
});

describe('with one shared secret', () => {
  it('a confirm naming another resource than its try finds nothing reserved there', async () => {
    const client = participantClient({ name: 'loyalty', url: `${server.url}/baton`, auth });
    const call = { txId: 'place:o-9', branch: 'spend', payload: {} };
    await client.reserve('try', 'seats', call);
    await expect(client.reserve('confirm', 'points', call)).rejects.toThrow(/nothing was reserved/);
    expect(ran).toEqual(['seats:try']);
  });

  it('refuses a captured action sent with another Idempotency-Key', async () => {
    const target = '/baton/actions/refund';
    const body = JSON.stringify({ points: 500 });
    const headers = authHeaders(auth, { method: 'POST', target, body, idempotencyKey: 'k-1' });
    const send = (key: string) =>
      fetch(`${server.url}${target}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': key },
        body,
      });
    expect((await send('k-2')).status).toBe(401);
    expect((await send('k-1')).status).toBe(200);
  });
});
