// Baton in the accounts service: it owns users, and holds credit for orders' sagas.
import { createBaton, TerminalError } from 'baton';
import type { BatonModuleOptions } from 'baton/nestjs';
import { PgDatabase } from 'baton/pg';

type Hold = { userId: string; amount: number };

export function accountsBaton(config: { databaseUrl: string; secret: string }): BatonModuleOptions {
  const baton = createBaton({
    db: new PgDatabase({ connectionString: config.databaseUrl }),
    service: 'accounts',
  });
  baton.entity({
    name: 'user',
    table: 'users',
    key: 'id',
    fields: ['firstName'],
    personal: ['firstName'],
  });
  const move = 'UPDATE users SET credit = credit + $2 WHERE id = $1 RETURNING credit';
  baton.participant.reservation<Hold, { held: number }>('credit', {
    try: async (tx, hold) => {
      const { rows } = await tx.query<{ credit: number }>(move, [hold.userId, -hold.amount]);
      if (!rows[0] || rows[0].credit < 0)
        throw new TerminalError(`not enough credit for ${hold.userId}`);
      return { held: hold.amount };
    },
    confirm: async () => {},
    cancel: async (tx, hold) => void (await tx.query(move, [hold.userId, hold.amount])),
  });
  return { baton, http: { auth: { type: 'hmac', secrets: [config.secret] } } };
}
