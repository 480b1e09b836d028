// Baton in the orders service: orders point at the accounts' users, and a saga holds credit.
import { createBaton, httpFeedSource, ownerClient, participantClient, saga } from 'baton';
import type { BatonModuleOptions } from 'baton/nestjs';
import { PgDatabase } from 'baton/pg';

export type PlaceOrder = { orderId: string; userId: string; amount: number };

export function ordersBaton(config: { databaseUrl: string; secret: string; accountsUrl: string }) {
  const baton = createBaton({
    db: new PgDatabase({ connectionString: config.databaseUrl }),
    service: 'orders',
  });
  const accounts = {
    name: 'accounts',
    url: `${config.accountsUrl}/baton`,
    auth: { type: 'hmac', secret: config.secret },
  } as const;
  const feed = baton.consumer({ name: 'orders-from-accounts', source: httpFeedSource(accounts) });
  baton.replicate({ entity: 'user', owner: ownerClient(accounts), consumer: feed });
  const userRef = baton.reference({
    table: 'orders',
    column: 'userId',
    entity: 'user',
    onDelete: 'keep',
    snapshotColumns: { firstName: 'userFirstName' },
  });

  const credit = participantClient(accounts);
  const setState = async (
    tx: { query(sql: string, values: unknown[]): Promise<unknown> },
    id: string,
    state: string,
  ) => void (await tx.query('UPDATE orders SET state = $2 WHERE id = $1', [id, state]));
  baton.sagas.define(
    saga('place-order', async (ctx, o: PlaceOrder) => {
      await ctx.step(
        'create',
        async (tx) =>
          void (await tx.query(
            `INSERT INTO orders (id, "userId", amount, state) VALUES ($1, $2, $3, 'pending')`,
            [o.orderId, o.userId, o.amount],
          )),
        { compensate: (tx) => setState(tx, o.orderId, 'rejected') },
      );
      await ctx.reserve('hold-credit', credit, 'credit', { userId: o.userId, amount: o.amount });
      await ctx.step('accept', (tx) => setState(tx, o.orderId, 'placed'));
    }),
  );
  const options: BatonModuleOptions = {
    baton,
    http: { auth: { type: 'hmac', secrets: [config.secret] } },
    workers: [feed, baton.sagas.worker()],
  };
  return { options, userRef };
}
