// The two NestJS services: TypeORM for the app's own data, BatonModule for Baton's life and endpoints.
import {
  Body,
  Controller,
  Delete,
  Get,
  HttpCode,
  HttpException,
  Inject,
  Module,
  NotFoundException,
  Param,
  Post,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { InjectDataSource, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import { type Baton, ReferenceViolation } from 'baton';
import { BATON, BatonModule } from 'baton/nestjs';
import { fromTypeORM } from 'baton/typeorm';
import type { DataSource, Repository } from 'typeorm';
import { accountsBaton } from './accounts-baton';
import { Order, type PlaceOrder, User } from './entities';
import { ordersBaton } from './orders-baton';

const USER_REF = 'USER_REF';
type Config = { databaseUrl: string; secret: string };

@Controller('users')
class UsersController {
  constructor(@InjectRepository(User) private readonly users: Repository<User>) {}
  @Post() async create(@Body() user: User) {
    return this.users.save(user);
  }
  @Get(':id') async show(@Param('id') id: string) {
    return (await this.users.findOneBy({ id })) ?? Promise.reject(new NotFoundException());
  }
  @Delete(':id') @HttpCode(204) async remove(@Param('id') id: string) {
    await this.users.delete(id);
  }
}

@Controller('orders')
class OrdersController {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @InjectRepository(Order) private readonly orders: Repository<Order>,
    @Inject(BATON) private readonly baton: Baton,
    @Inject(USER_REF) private readonly userRef: ReturnType<typeof ordersBaton>['userRef'],
  ) {}
  @Post() @HttpCode(202) async place(@Body() order: PlaceOrder) {
    try {
      await this.dataSource.transaction(async (manager) => {
        await this.userRef.check(fromTypeORM(manager), order.userId);
        await this.baton.sagas.start('place-order', order, {
          id: `place:${order.orderId}`,
          tx: fromTypeORM(manager),
        });
      });
      return { orderId: order.orderId };
    } catch (error) {
      if (!(error instanceof ReferenceViolation)) throw error;
      throw new HttpException(error.message, error.reason === 'owner-unreachable' ? 503 : 422);
    }
  }
  @Get(':id') async show(@Param('id') id: string) {
    return (await this.orders.findOneBy({ id })) ?? Promise.reject(new NotFoundException());
  }
}

const typeorm = (url: string, entity: typeof User | typeof Order) =>
  TypeOrmModule.forRoot({ type: 'postgres', url, entities: [entity], synchronize: true });

async function listen(module: unknown) {
  const app = await NestFactory.create(module as never, { rawBody: true, logger: ['error'] });
  app.enableShutdownHooks();
  await app.listen(0, '127.0.0.1');
  return { url: (await app.getUrl()).replace('[::1]', '127.0.0.1'), stop: () => app.close() };
}

export async function startAccounts(config: Config) {
  @Module({
    imports: [
      typeorm(config.databaseUrl, User),
      TypeOrmModule.forFeature([User]),
      BatonModule.forRoot(accountsBaton(config)),
    ],
    controllers: [UsersController],
  })
  class AccountsModule {}
  return listen(AccountsModule);
}

export async function startOrders(config: Config & { accountsUrl: string }) {
  const wiring = ordersBaton(config);
  @Module({
    imports: [
      typeorm(config.databaseUrl, Order),
      TypeOrmModule.forFeature([Order]),
      BatonModule.forRoot(wiring.options),
    ],
    controllers: [OrdersController],
    providers: [{ provide: USER_REF, useValue: wiring.userRef }],
  })
  class OrdersModule {}
  return listen(OrdersModule);
}
