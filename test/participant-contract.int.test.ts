import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import {
  actionRef,
  InvalidInputError,
  participantClient,
  reservationRef,
  saga,
  TerminalError,
} from '../src/index.ts';
import type { SagaWorker } from '../src/sagas/saga-worker.ts';
import { SECRET } from './helpers.ts';
import { startService, type TestService } from './support/services.ts';

/**
 * Typed participant names shared by both sides: the participant declares its
 * handlers against them, the orchestrator reserves and calls through them,
 * and a wrong payload, body or result is a compile error on either side
 * (`@ts-expect-error` lines fail the type check if they ever compile). At run
 * time a typed name is its plain name: the calls below cross real HTTP.
 */

// The contract module both services would import.
const seats = reservationRef<{ show: string; count: number }, { held: number }>('seats');
const refund = actionRef<{ amount: number }, { refunded: number }>('refund');

let venue: TestService;
let box: TestService;
let worker: SagaWorker;

beforeAll(async () => {
  venue = await startService('contract_venue');
  box = await startService('contract_box');
  const free = new Map([['hamlet', 3]]);
  venue.baton.participant.reservation(seats, {
    try: async (_tx, hold) => {
      expectTypeOf(hold).toEqualTypeOf<{ show: string; count: number }>();
      const left = (free.get(hold.show) ?? 0) - hold.count;
      if (left < 0) throw new TerminalError(`only ${free.get(hold.show)} seats left`);
      free.set(hold.show, left);
      return { held: hold.count };
    },
    confirm: async () => {},
    cancel: async (_tx, hold) => void free.set(hold.show, (free.get(hold.show) ?? 0) + hold.count),
  });
  venue.baton.participant.action(refund, {
    run: async (_tx, body) => ({ refunded: body.amount }),
  });
  const client = participantClient({
    name: 'venue',
    url: `${venue.server.url}/baton`,
    auth: { type: 'hmac', secret: SECRET },
  });
  box.baton.sagas.define(
    saga('book', async (ctx, input: { show: string; count: number }) => {
      const { held } = await ctx.reserve('hold-seats', client, seats, input);
      const { refunded } = await ctx.call('refund', (key) =>
        client.call(refund, { amount: held * 10 }, key),
      );
      return { held, refunded };
    }),
  );
  worker = box.baton.sagas.worker();
  await worker.start();
});
afterAll(async () => {
  await worker?.stop();
  await box?.stop();
  await venue?.stop();
});

describe('typed participant names', () => {
  it('reserve and call through them, typed end to end, over HTTP', async () => {
    const started = await box.baton.sagas.start('book', { show: 'hamlet', count: 2 });
    const done = await box.baton.sagas.waitFor<{ held: number; refunded: number }>(started.id);
    expect(done.state).toBe('completed');
    expect(done.output).toEqual({ held: 2, refunded: 20 });
    const refused = await box.baton.sagas.start('book', { show: 'hamlet', count: 2 });
    expect((await box.baton.sagas.waitFor(refused.id)).state).toBe('compensated');
  });

  it('refuse a wrong payload, body or result at compile time', () => {
    const client = participantClient({
      name: 'venue',
      url: 'http://127.0.0.1:1/baton',
      auth: { type: 'hmac', secret: SECRET },
    });
    // Never called: these lines are for the type checker.
    const _typeOnly = () => {
      // @ts-expect-error a body of the wrong shape
      void client.call(refund, { amount: 'ten' }, 'k');
      // @ts-expect-error the result is { refunded: number }
      const _r: Promise<{ other: string }> = client.call(refund, { amount: 1 }, 'k');
      saga('wrong', async (ctx) => {
        // @ts-expect-error a payload without count
        await ctx.reserve('h', client, seats, { show: 'x' });
      });
      // @ts-expect-error the try's result must be { held: number }
      venue.baton.participant.reservation(seats, {
        try: async () => ({ held: 'all' }),
        confirm: async () => {},
        cancel: async () => {},
      });
      const _ok: Promise<{ refunded: number }> = client.call(refund, { amount: 1 }, 'k');
    };
    void _typeOnly;
  });

  it('refuses a name that is not one, when it is made', () => {
    for (const bad of ['', '1seat', 'seats/../x', 'a'.repeat(101)]) {
      expect(() => reservationRef(bad)).toThrow(InvalidInputError);
      expect(() => actionRef(bad)).toThrow(InvalidInputError);
    }
  });
});
