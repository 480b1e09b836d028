import {
  type DynamicModule,
  type FactoryProvider,
  Module,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Baton, Startable, StartOptions } from '../baton.ts';
import type { ServiceHandler } from '../http/service-handler.ts';
import { type BatonMiddlewareOptions, batonMiddleware } from './node.ts';

/**
 * `baton/nestjs`: a module that owns Baton's life in a NestJS app (Express
 * platform) — `baton.start()` on module init (migrate, install, the relay
 * and your workers), stop and close its database on shutdown — and mounts
 * Baton's endpoints. Inject the Baton instance with `@Inject(BATON)`.
 *
 *   BatonModule.forRootAsync({
 *     inject: [ConfigService],
 *     useFactory: (config) => {
 *       const baton = createBaton({ db: new PgDatabase({ connectionString: config.get('DB') }), service: 'orders' });
 *       return { baton, http: { auth: { type: 'hmac', secrets: [config.get('SECRET')] } } };
 *     },
 *   })
 *
 * Create the app with `NestFactory.create(AppModule, { rawBody: true })`:
 * Nest parses JSON bodies before any module's middleware, and Baton checks
 * signatures over the exact bytes (without it, POSTs are refused and the
 * answer says so). Call `app.enableShutdownHooks()` so SIGTERM stops Baton.
 */
export interface BatonModuleOptions {
  baton: Baton;
  /** Mounts Baton's endpoints (feed, lookups, votes, participant calls) when given. */
  http?: Parameters<Baton['httpHandler']>[0] & BatonMiddlewareOptions;
  /** Start a relay for this service's outbox (default true), or with these options. */
  relay?: StartOptions['relay'];
  /** More parts to start after install and stop on shutdown: consumers, saga workers, a caretaker schedule. */
  workers?: readonly Startable[];
  /** Close the Baton instance's database on shutdown (default true: the module owns it). */
  closeDatabase?: boolean;
}

export interface BatonModuleAsyncOptions {
  imports?: DynamicModule['imports'];
  /** Providers handed to `useFactory`, in order (ConfigService, …). */
  inject?: FactoryProvider['inject'];
  useFactory: FactoryProvider<BatonModuleOptions | Promise<BatonModuleOptions>>['useFactory'];
}

/** Injection token of the Baton instance. */
export const BATON = Symbol.for('baton:instance');
const OPTIONS = Symbol.for('baton:module-options');

/** Starts and stops Baton with the application; mounts its endpoints on the Express instance. */
class BatonLifecycle implements OnModuleInit, OnApplicationShutdown {
  private running: { stop(): Promise<void> } | undefined;
  private handler: ServiceHandler | undefined;

  constructor(
    private readonly options: BatonModuleOptions,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  async onModuleInit(): Promise<void> {
    const { baton, http } = this.options;
    if (http) {
      // Module init runs after Nest's router is set up and before its 404 handler:
      // Baton's paths, which no controller serves, reach this middleware.
      const { maxBodyBytes, ...handlerOptions } = http;
      this.handler = baton.httpHandler(handlerOptions);
      const app = this.adapterHost.httpAdapter?.getInstance() as
        | { use?: (middleware: unknown) => void }
        | undefined;
      if (typeof app?.use !== 'function')
        throw new Error(
          'BatonModule mounts its endpoints on the Express platform; with another, mount them yourself (baton/fastify for Fastify)',
        );
      app.use(batonMiddleware(this.handler, { maxBodyBytes }));
    }
    this.running = await baton.start({
      relay: this.options.relay ?? true,
      workers: this.options.workers ?? [],
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.running?.stop();
    await this.handler?.close();
    if (this.options.closeDatabase !== false) await this.options.baton.db.close();
  }
}

// biome-ignore lint/complexity/noStaticOnlyClass: Nest identifies a module by its class
export class BatonModule {
  /** The module, configured from other providers (ConfigService, …); global, so `BATON` is injectable everywhere. */
  static forRootAsync(options: BatonModuleAsyncOptions): DynamicModule {
    return {
      module: BatonModule,
      global: true,
      imports: options.imports ?? [],
      providers: [
        { provide: OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] },
        {
          provide: BatonLifecycle,
          useFactory: (o: BatonModuleOptions, host: HttpAdapterHost) => new BatonLifecycle(o, host),
          inject: [OPTIONS, HttpAdapterHost],
        },
        { provide: BATON, useFactory: (o: BatonModuleOptions) => o.baton, inject: [OPTIONS] },
      ],
      exports: [BATON],
    };
  }

  /** The module with options known up front. */
  static forRoot(options: BatonModuleOptions): DynamicModule {
    return BatonModule.forRootAsync({ useFactory: () => options });
  }
}
Module({})(BatonModule);
