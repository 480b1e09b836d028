import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { authFromEnvironment } from '../src/cli/commands/reconcile.ts';
import { generateServiceKeys } from '../src/index.ts';

/** `baton reconcile` signs as the service with its own key when the owners take per-service keys. */
describe("the CLI's credentials from the environment", () => {
  const keys = generateServiceKeys('orders', 'orders-1');
  const file = join(mkdtempSync(join(tmpdir(), 'baton-key-')), 'orders.pem');
  writeFileSync(file, keys.auth.privateKey, { mode: 0o600 });

  it('signs as the service with its key file, id and name', () => {
    expect(
      authFromEnvironment({
        BATON_PRIVATE_KEY_FILE: file,
        BATON_KEY_ID: 'orders-1',
        BATON_SERVICE: 'orders',
      }),
    ).toEqual({
      type: 'keys',
      service: 'orders',
      keyId: 'orders-1',
      privateKey: keys.auth.privateKey,
    });
  });

  it('says what is missing: the key id or the service, or a readable file', () => {
    expect(() => authFromEnvironment({ BATON_PRIVATE_KEY_FILE: file })).toThrow(
      /BATON_SERVICE.*BATON_KEY_ID/,
    );
    expect(() =>
      authFromEnvironment({
        BATON_PRIVATE_KEY_FILE: `${file}.missing`,
        BATON_KEY_ID: 'orders-1',
        BATON_SERVICE: 'orders',
      }),
    ).toThrow(/cannot read BATON_PRIVATE_KEY_FILE/);
    expect(() => authFromEnvironment({})).toThrow(/BATON_PRIVATE_KEY_FILE.*BATON_HMAC_SECRET/);
  });

  it('takes a shared secret or a token as before', () => {
    expect(authFromEnvironment({ BATON_HMAC_SECRET: 's'.repeat(20) })).toEqual({
      type: 'hmac',
      secret: 's'.repeat(20),
    });
    expect(authFromEnvironment({ BATON_BEARER_TOKEN: 't' })).toEqual({
      type: 'bearer',
      token: 't',
    });
  });
});
