import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inProcess } from './support/baton-cli.ts';

/**
 * A database URL the CLI cannot use is quoted back to the operator — without
 * its password, whatever the password holds (`/`, `@`, `#`, `?`, `:`) and
 * however the URL is broken: no scheme, one slash, a bad port, a bad host, a
 * `password=` parameter (security review, item 9). The real command, in
 * process; the only server it may reach is a closed port on loopback.
 */
const password = fc
  .stringMatching(/^[A-Za-z0-9/@#?!%:._-]{4,16}$/)
  .map((s) => `PW${s}`)
  .filter((s) => !s.includes('127.0.0.1'));

const broken = [
  (pw: string) => `postgresql://ada:${pw}@127.0.0.1:1/db`,
  (pw: string) => `postgres://ada:${pw}@127.0.0.1:x/db`,
  (pw: string) => `postgres://ada:${pw}@[bad/db`,
  (pw: string) => `ada:${pw}@127.0.0.1/db`,
  (pw: string) => `postgres:/ada:${pw}@127.0.0.1/db`,
  (pw: string) => `postgres://ada@127.0.0.1:1/db?password=${encodeURIComponent(pw)}`,
  (pw: string) => `postgres://ada@127.0.0.1:x/db?sslmode=disable&password=${pw}`,
];

describe('a bad database URL is quoted without its password', () => {
  it('for generated passwords and broken URLs, from the flag and the environment', async () => {
    await fc.assert(
      fc.asyncProperty(
        password,
        fc.constantFrom(...broken),
        fc.boolean(),
        async (pw, url, flag) => {
          const text = url(pw);
          const run = flag
            ? await inProcess(['status', '--database-url', text], {})
            : await inProcess(['status'], { BATON_DATABASE_URL: text });
          expect(run.code).not.toBe(0);
          const said = `${run.stdout}${run.stderr}`;
          expect(said).not.toContain(pw);
          expect(said).not.toContain(encodeURIComponent(pw));
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);
});
