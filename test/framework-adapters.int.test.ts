import 'reflect-metadata';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batonFastify } from '../src/adapters/fastify.ts';
import { batonFetch } from '../src/adapters/fetch.ts';
import { BATON, BatonModule } from '../src/adapters/nestjs.ts';
import { batonMiddleware } from '../src/adapters/node.ts';
import { type Baton, createBaton, participantClient, signedClient } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase, SECRET } from './helpers.ts';

/*
 * Baton's endpoints mounted in the frameworks people run — Express (with its
 * JSON parser on the app's own routes), Fastify, Hono, NestJS and plain
 * node:http — each on a real server on loopback, called by Baton's own signed
 * clients: the feed (GET with a query) and a participant action (POST whose
 * signature covers the exact body). The app's own routes keep working beside
 * them, a wrong signature is refused, and a body parser that ran first gets
 * an answer that says how to mount Baton.
 */

const auth = { type: 'hmac', secrets: [SECRET] } as const;
let database: TestDatabase;
let baton: Baton;

beforeAll(async () => {
  database = await freshDatabase('frameworks');
  baton = createBaton({ db: database.db, service: 'shop' });
  await baton.migrate();
  baton.participant.action('echo', {
    run: async (_tx, body) => ({ echoed: body }),
    undo: async () => {},
  });
  await database.db.transaction((tx) =>
    baton.publish(tx, [
      { type: 'thing.made', key: 'a', payload: { n: 1 } },
      { type: 'thing.made', key: 'b', payload: { n: 2 } },
    ]),
  );
  await baton.relay().runOnce();
});
afterAll(async () => {
  await database?.drop();
});

/** Runs the checks every mount must pass against a server at `base`. */
async function checkMount(base: string, key: string): Promise<void> {
  const feed = signedClient({
    name: 'shop',
    url: `${base}/baton`,
    auth: { type: 'hmac', secret: SECRET },
  });
  const events = await feed.request('GET', 'events?after=0&limit=10');
  expect(events.status, events.body.toString()).toBe(200);
  expect(events.body.toString().trim().split('\n').length).toBeGreaterThanOrEqual(2);

  const shop = participantClient({
    name: 'shop',
    url: `${base}/baton`,
    auth: { type: 'hmac', secret: SECRET },
  });
  await expect(shop.call('echo', { hello: 'world', n: 1.5 }, key)).resolves.toEqual({
    echoed: { hello: 'world', n: 1.5 },
  });

  const forged = signedClient({
    name: 'shop',
    url: `${base}/baton`,
    auth: { type: 'hmac', secret: 'wrong-secret-0123456789' },
  });
  expect((await forged.request('GET', 'events?after=0')).status).toBe(401);

  const own = await fetch(`${base}/hello`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'app' }),
  });
  expect(await own.json()).toEqual({ hello: 'app' });
}

const urlOf = (server: Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const listen = (server: Server) =>
  new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });

describe('Baton mounted in web frameworks', () => {
  it('Express: before the JSON parser, beside the app routes', async () => {
    const app = express();
    app.use(batonMiddleware(baton.httpHandler({ auth })));
    app.use(express.json());
    app.post('/hello', (req, res) => {
      res.json({ hello: (req.body as { name: string }).name });
    });
    const server = createServer(app);
    await listen(server);
    try {
      await checkMount(urlOf(server), 'express-1');
    } finally {
      await close(server);
    }
  });

  it('Express: under a mount path the client signed (originalUrl), and a parser that ran first is named', async () => {
    const app = express();
    app.use(
      '/svc',
      express.json(),
      batonMiddleware(baton.httpHandler({ auth, basePath: '/svc/baton' })),
    );
    const server = createServer(app);
    await listen(server);
    try {
      const base = `${urlOf(server)}/svc`;
      const feed = signedClient({
        name: 'shop',
        url: `${base}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      });
      expect((await feed.request('GET', 'events?after=0')).status).toBe(200);
      const post = await feed.request('POST', 'actions/echo', {
        body: { x: 1 },
        headers: { 'idempotency-key': 'express-parsed' },
      });
      expect(post.status).toBe(500);
      expect(JSON.parse(post.body.toString()).error).toMatchObject({
        code: 'BATON_BODY_CONSUMED',
        message: expect.stringMatching(/mount Baton's middleware before body parsers/),
      });
    } finally {
      await close(server);
    }
  });

  it('Fastify: an encapsulated plugin keeps raw bodies only for Baton', async () => {
    const app = Fastify();
    await app.register(batonFastify(baton.httpHandler({ auth })));
    app.post('/hello', async (request) => ({ hello: (request.body as { name: string }).name }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      await checkMount(urlOf(app.server), 'fastify-1');
    } finally {
      await app.close();
    }
  });

  it('Hono: the Fetch API handler on a route', async () => {
    const app = new Hono();
    const handle = batonFetch(baton.httpHandler({ auth }));
    app.all('/baton/*', (c) => handle(c.req.raw));
    app.post('/hello', async (c) =>
      c.json({ hello: ((await c.req.json()) as { name: string }).name }),
    );
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server;
    await new Promise<void>((resolve) =>
      server.listening ? resolve() : server.once('listening', () => resolve()),
    );
    try {
      await checkMount(urlOf(server), 'hono-1');
    } finally {
      await close(server);
    }
  });

  it('node:http: the middleware as the whole server', async () => {
    const mount = batonMiddleware(baton.httpHandler({ auth }));
    const server = createServer((req, res) =>
      mount(req, res, () => {
        let body = '';
        req.on('data', (chunk) => {
          body += chunk;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ hello: (JSON.parse(body) as { name: string }).name }));
        });
      }),
    );
    await listen(server);
    try {
      await checkMount(urlOf(server), 'node-1');
    } finally {
      await close(server);
    }
  });

  it('NestJS: BatonModule.forRootAsync owns migrate, install, start and stop, and mounts the endpoints (rawBody)', async () => {
    const nestDatabase = await freshDatabase('nest');
    const started: string[] = [];
    const worker = {
      start: async () => void started.push('worker started'),
      stop: async () => void started.push('worker stopped'),
    };
    class Greeter {
      constructor(readonly baton: Baton) {}
    }
    // Nest's decorators applied as functions (this project compiles without legacy decorators).
    class HelloController {
      name() {
        return { service: 'nest' };
      }
    }
    Get('/service')(
      HelloController.prototype,
      'name',
      Object.getOwnPropertyDescriptor(HelloController.prototype, 'name') as PropertyDescriptor,
    );
    Controller()(HelloController);
    class AppModule {}
    Module({
      imports: [
        BatonModule.forRootAsync({
          useFactory: async () => {
            const nestBaton = createBaton({ db: nestDatabase.db, service: 'nest' });
            nestBaton.participant.action('echo', {
              run: async (_tx, body) => ({ echoed: body }),
              undo: async () => {},
            });
            return { baton: nestBaton, http: { auth }, workers: [worker] };
          },
        }),
      ],
      controllers: [HelloController],
      providers: [{ provide: Greeter, useFactory: (b: Baton) => new Greeter(b), inject: [BATON] }],
    })(AppModule);
    const app = await NestFactory.create(AppModule, { rawBody: true, logger: false });
    await app.listen(0, '127.0.0.1');
    try {
      const base = await app.getUrl();
      expect(app.get(Greeter).baton.service).toBe('nest');
      expect(started).toEqual(['worker started']);
      const migrated = await nestDatabase.db.query(
        "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'baton'",
      );
      expect(migrated.rows[0]?.n).toBeGreaterThan(0);
      const shop = participantClient({
        name: 'nest',
        url: `${base.replace('[::1]', '127.0.0.1')}/baton`,
        auth: { type: 'hmac', secret: SECRET },
      });
      await expect(shop.call('echo', { n: 1 }, 'nest-1')).resolves.toEqual({ echoed: { n: 1 } });
      expect(await (await fetch(`${base}/service`)).json()).toEqual({ service: 'nest' });
    } finally {
      await app.close();
      await nestDatabase.drop();
    }
    expect(started).toEqual(['worker started', 'worker stopped']);
  });
});
