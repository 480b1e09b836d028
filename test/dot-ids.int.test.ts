import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Reference } from '../src/references/reference.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Ids that a URL path cannot carry as they are — "." and "..", which every
 * URL parser resolves (also percent-encoded), and ids with "/", "%2e", "?"
 * or "#" — are looked up and announced for what they are, never for another
 * endpoint (security review, item 11).
 */

const IDS = ['.', '..', 'a/b', '%2e', '%2e%2e', '?x=1', '#top', 'announce', ' '];

let accounts: TestService;
let shop: TestService;
let ref: Reference;

beforeAll(async () => {
  accounts = await startService('dots_accounts');
  shop = await startService('dots_shop');
  await accounts.database.db.query('CREATE TABLE users (id text PRIMARY KEY, name text)');
  accounts.baton.entity({ name: 'user', table: 'users', key: 'id', fields: ['name'] });
  await accounts.baton.install();
  for (const id of IDS)
    await accounts.database.db.query('INSERT INTO users VALUES ($1, $2)', [id, `name of ${id}`]);
  await shop.database.db.query('CREATE TABLE orders (id serial PRIMARY KEY, user_id text)');
  shop.baton.replicate({
    entity: 'user',
    owner: shop.ownerClientOf(accounts),
    consumer: shop.consumerOf(accounts), // not started: every check below asks the owner
  });
  ref = shop.baton.reference({
    table: 'orders',
    column: 'user_id',
    entity: 'user',
    onDelete: 'keep',
  });
  await shop.baton.install();
});
afterAll(async () => {
  await shop?.stop();
  await accounts?.stop();
});

describe('ids a URL path would resolve', () => {
  it.each(IDS)('looks up and announces %j as itself', async (id) => {
    const owner = shop.ownerClientOf(accounts);
    const found = await owner.lookup('user', id);
    expect(found).toMatchObject({ id, state: 'active', fields: { name: `name of ${id}` } });
    expect(await owner.announce('user', id, found.version)).toMatchObject({ id, state: 'active' });
  });

  it.each(IDS)('checks a reference to %j against the owner', async (id) => {
    await shop.database.db.transaction(async (tx) => {
      await ref.check(tx, id);
      await tx.query('INSERT INTO orders (user_id) VALUES ($1)', [id]);
    });
  });
});
