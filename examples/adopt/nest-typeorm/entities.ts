// The two services' tables, as TypeORM entities (camelCase columns, quoted by TypeORM).
import { Column, Entity, PrimaryColumn } from 'typeorm';

@Entity('users')
export class User {
  @PrimaryColumn('text') id: string;
  @Column('text') firstName: string;
  @Column('integer') credit: number;
}

@Entity('orders')
export class Order {
  @PrimaryColumn('text') id: string;
  @Column('text', { nullable: true }) userId: string | null;
  @Column('text', { nullable: true }) userFirstName: string | null;
  @Column('integer') amount: number;
  @Column('text') state: string;
}

export type PlaceOrder = { orderId: string; userId: string; amount: number };
type Sql = { query(text: string, values: unknown[]): Promise<unknown> };

/** The app's own order writes, in SQL on a given transaction (Baton's, in a saga step). */
export const orderWrites = (tx: Sql) => ({
  create: async (o: PlaceOrder) =>
    void (await tx.query(
      `INSERT INTO orders (id, "userId", amount, state) VALUES ($1, $2, $3, 'pending')`,
      [o.orderId, o.userId, o.amount],
    )),
  setState: async (id: string, state: string) =>
    void (await tx.query('UPDATE orders SET state = $2 WHERE id = $1', [id, state])),
});
