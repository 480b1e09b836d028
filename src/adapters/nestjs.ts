import {
  type DynamicModule,
  type FactoryProvider,
  Module,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { Baton } from '../baton.ts';
import type { ServiceHandler } from '../http/service-handler.ts';
import { type BatonMiddlewareOptions, batonMiddleware } from './node.ts';

/**
 * `baton/nestjs`: a module that owns Baton's life in a NestJS app (Express
 * platform) — migrate, install, start the relay and your workers on module
 * init; stop them, last started first, on shutdown — and mounts Baton's
 * endpoints. Inject the Baton instance with `@Inject(BATON)`.
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
  /** Run `baton.migrate()` on init. Default true. */
  migrate?: boolean;
  /** Run `baton.install()` on init (after entities, references, … are declared). Default true. */
  install?: boolean;
  /** Start a relay for this service's outbox. Default true. */
  relay?: boolean;
  /** More parts to start after install and stop on shutdown: consumers, saga workers, a caretaker schedule. */
  workers?: readonly Startable[];
}

export interface BatonModuleAsyncOptions {
  imports?: DynamicModule['imports'];
  /** Providers handed to `useFactory`, in order (ConfigService, …). */
  inject?: FactoryProvider['inject'];
  useFactory: FactoryProvider<BatonModuleOptions | Promise<BatonModuleOptions>>['useFactory'];
}

/** A part with a life: a consumer, a saga worker, a relay (start may return at once or when running). */
export interface Startable {
  start(): unknown;
  stop(): unknown;
}

/** Injection token of the Baton instance. */
export const BATON = Symbol.for('baton:instance');
const OPTIONS = Symbol.for('baton:module-options');

/** Starts and stops Baton with the application; mounts its endpoints on the Express instance. */
class BatonLifecycle implements OnModuleInit, OnApplicationShutdown {
  private readonly started: Startable[] = [];
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
    if (this.options.migrate !== false) await baton.migrate();
    if (this.options.install !== false) await baton.install();
    const parts = [
      ...(this.options.relay === false ? [] : [baton.relay()]),
      ...(this.options.workers ?? []),
    ];
    for (const part of parts) {
      await part.start();
      this.started.push(part);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    for (const part of this.started.splice(0).reverse()) await part.stop();
    await this.handler?.close();
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
