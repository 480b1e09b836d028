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
