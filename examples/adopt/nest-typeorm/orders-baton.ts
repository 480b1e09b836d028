// Baton in the orders service: orders point at the accounts' users, and a saga holds credit.
import { createBaton, httpFeedSource, ownerClient, participantClient, saga } from 'baton';
import { PgDatabase } from 'baton/pg';
import { orderWrites, type PlaceOrder } from './entities';

export function ordersBaton(config: { databaseUrl: string; secret: string; accountsUrl: string }) {
  const db = new PgDatabase({ connectionString: config.databaseUrl });
  const baton = createBaton({ db, service: 'orders' });
  const auth = { type: 'hmac', secret: config.secret } as const;
  const accounts = { name: 'accounts', url: `${config.accountsUrl}/baton`, auth };
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
  baton.sagas.define(
    saga('place-order', async (ctx, o: PlaceOrder) => {
      await ctx.step('create', (tx) => orderWrites(tx).create(o), {
        compensate: (tx) => orderWrites(tx).setState(o.orderId, 'rejected'),
      });
      await ctx.reserve('hold-credit', credit, 'credit', o); // accounts reads userId, amount
      await ctx.step('accept', (tx) => orderWrites(tx).setState(o.orderId, 'placed'));
    }),
  );
  const http = { auth: { type: 'hmac', secrets: [config.secret] } } as const;
  return { options: { baton, http, workers: [feed, baton.sagas.worker()] }, userRef };
}
