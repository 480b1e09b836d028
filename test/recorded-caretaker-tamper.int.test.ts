import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordedCaretaker } from '../src/baton.ts';
import { InvalidInputError } from '../src/index.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * `baton reconcile` (recordedCaretaker) builds a service's caretaker from
 * what the service recorded in its tables. Those rows are data: a recorded
 * id type that is SQL, or an owner URL that would receive the signed
 * requests elsewhere (credentials in it, another scheme), is refused with
 * what to do — never put into SQL, never called (security review, item 13).
 */

let accounts: TestService;
let shop: TestService;
const auth = { type: 'hmac', secret: SECRET } as const;
const replicas = (sql: string, values: unknown[]) => shop.database.db.query(sql, values);

beforeAll(async () => {
  accounts = await startService('recorded_accounts');
  shop = await startService('recorded_shop');
  await accounts.database.db.query('CREATE TABLE users (id text PRIMARY KEY, name text)');
  accounts.baton.entity({ name: 'user', table: 'users', key: 'id', fields: ['name'] });
  await accounts.baton.install();
  await shop.database.db.query('CREATE TABLE orders (id text PRIMARY KEY, user_id text)');
  shop.baton.replicate({
    entity: 'user',
    owner: shop.ownerClientOf(accounts),
    consumer: shop.consumerOf(accounts),
  });
  shop.baton.reference({ table: 'orders', column: 'user_id', entity: 'user', onDelete: 'keep' });
  await shop.baton.install();
});
afterAll(async () => {
  await shop?.stop();
  await accounts?.stop();
});

describe('what a service recorded is checked before the CLI uses it', () => {
  it('the untouched record works', async () => {
    const recorded = await recordedCaretaker(shop.database.db, { auth });
    expect(recorded.targets.map((t) => t.replication.replica.idType)).toEqual(['text']);
  });

  it.each(['text; DROP TABLE orders', 'text) OR (1=1', 'no_such_type', ''])(
    'refuses the recorded id type %j',
    async (idType) => {
      const { rows } = await replicas('SELECT id_type FROM baton.replicas', []);
      try {
        await replicas('UPDATE baton.replicas SET id_type = $1', [idType]);
        await expect(recordedCaretaker(shop.database.db, { auth })).rejects.toThrow(
          /recorded id type of replica user .* is not a type/,
        );
      } finally {
        await replicas('UPDATE baton.replicas SET id_type = $1', [rows[0]?.id_type]);
      }
      expect((await shop.database.db.query('SELECT count(*)::int AS n FROM orders')).rows).toEqual([
        { n: 0 },
      ]);
    },
  );

  it.each([
    'http://attacker:secret@127.0.0.1:1/baton',
    'file:///etc/passwd',
    'ftp://127.0.0.1/baton',
    'not a url',
  ])('refuses the recorded owner URL %j', async (ownerUrl) => {
    const { rows } = await replicas('SELECT owner_url FROM baton.replicas', []);
    try {
      await replicas('UPDATE baton.replicas SET owner_url = $1', [ownerUrl]);
      const error = await recordedCaretaker(shop.database.db, { auth }).catch((e) => e);
      expect(error).toBeInstanceOf(InvalidInputError);
      expect(String(error.message)).toMatch(/recorded owner URL of replica user/);
    } finally {
      await replicas('UPDATE baton.replicas SET owner_url = $1', [rows[0]?.owner_url]);
    }
  });
});
