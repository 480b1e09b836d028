import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { participantClient, TerminalError } from '../src/index.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/*
 * Undoable participant actions, over real signed HTTP: an undo runs the
 * action's undo once if the call ran; if the call never ran, the undo is a
 * recorded no-op and the call is refused should it still arrive (a saga
 * compensating a call whose outcome it does not know relies on both).
 */
describe('participant: undoing an action', () => {
  let loyalty: TestService;
  const client = () =>
    participantClient({
      name: 'loyalty',
      url: `${loyalty.server.url}/baton`,
      auth: { type: 'hmac', secret: SECRET },
    });

  beforeAll(async () => {
    loyalty = await startService('participant_undo');
    await loyalty.database.db.query(
      'CREATE TABLE grants (key text PRIMARY KEY, points int NOT NULL, undone boolean NOT NULL DEFAULT false)',
    );
    loyalty.baton.participant.action('grant', {
      run: async (tx, body: { points: number }, { idempotencyKey }) => {
        await tx.query('INSERT INTO grants (key, points) VALUES ($1, $2)', [
          idempotencyKey,
          body.points,
        ]);
        return { granted: body.points };
      },
      undo: async (tx, _body, { idempotencyKey, result }) => {
        expect(result).toEqual({ granted: 5 }); // the stored result of the call
        const r = await tx.query('UPDATE grants SET undone = true WHERE key = $1 AND NOT undone', [
          idempotencyKey,
        ]);
        if (r.rowCount !== 1) throw new Error(`undo of ${idempotencyKey} ran twice`);
      },
    });
    loyalty.baton.participant.action('note', { run: async () => ({ ok: true }) });
  });
  afterAll(async () => {
    await loyalty?.stop();
  });

  const grants = async () =>
    (
      await loyalty.database.db.query<{ key: string; points: number; undone: boolean }>(
        'SELECT key, points, undone FROM grants ORDER BY key',
      )
    ).rows;

  it('undoes a call that ran, once; a repeat of the undo or of the call changes nothing', async () => {
    expect(await client().call('grant', { points: 5 }, 'k-ran')).toEqual({ granted: 5 });
    await client().undo('grant', { points: 5 }, 'k-ran');
    await client().undo('grant', { points: 5 }, 'k-ran'); // duplicate: no second undo
    expect(await grants()).toEqual([{ key: 'k-ran', points: 5, undone: true }]);
    await expect(client().call('grant', { points: 5 }, 'k-ran')).rejects.toThrow(
      /BATON_UNDONE.*run and then undone/,
    );
  });

  it('an undo that comes first is a no-op, and the late call is refused', async () => {
    await client().undo('grant', { points: 7 }, 'k-late');
    const late = client().call('grant', { points: 7 }, 'k-late');
    await expect(late).rejects.toBeInstanceOf(TerminalError);
    await expect(late).rejects.toThrow(/409 BATON_UNDONE.*its undo arrived first/);
    await client().undo('grant', { points: 7 }, 'k-late'); // still a no-op
    expect((await grants()).map((g) => g.key)).toEqual(['k-ran']);
  });

  it('refuses an undo for an action without one, an unknown action, and a key of another action', async () => {
    await expect(client().undo('note', {}, 'k-note')).rejects.toThrow(
      /404 BATON_UNKNOWN_ACTION.*"note" has no undo/,
    );
    await expect(client().undo('nothing', {}, 'k-x')).rejects.toThrow(/404 BATON_UNKNOWN_ACTION/);
    await client().call('note', {}, 'k-shared');
    loyalty.baton.participant.action('other', {
      run: async () => null,
      undo: async () => {},
    });
    await expect(client().undo('other', {}, 'k-shared')).rejects.toThrow(/409 BATON_KEY_REUSED/);
  });
});
