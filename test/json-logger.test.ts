import { Writable } from 'node:stream';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJsonLogger } from '../src/index.ts';

/** Logs (issue 13, item 3): JSON lines, the trace id on every line in a span, levels, no secrets. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, destination };
}

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider());
});
afterAll(() => {
  trace.disable();
  context.disable();
});

describe('createJsonLogger', () => {
  it('writes one JSON object per line with the service, and the trace inside a span', async () => {
    const { lines, destination } = capture();
    const logger = createJsonLogger({ service: 'orders', destination });
    logger.info({ orderId: 'o1' }, 'outside');
    await trace.getTracer('t').startActiveSpan('op', async (span) => {
      logger.warn({ orderId: 'o2' }, 'inside');
      span.end();
    });
    expect(lines[0]).toMatchObject({ service: 'orders', msg: 'outside', orderId: 'o1', level: 30 });
    expect(lines[0]).not.toHaveProperty('trace_id');
    expect(lines[1]).toMatchObject({
      msg: 'inside',
      trace_id: expect.stringMatching(/^[0-9a-f]{32}$/),
      span_id: expect.stringMatching(/^[0-9a-f]{16}$/),
    });
  });

  it('logs at the level asked for and above only', () => {
    const { lines, destination } = capture();
    const logger = createJsonLogger({ service: 'orders', level: 'warn', destination });
    logger.debug({}, 'd');
    logger.info({}, 'i');
    logger.warn({}, 'w');
    logger.error({}, 'e');
    expect(lines.map((l) => l.msg)).toEqual(['w', 'e']);
  });

  it('never writes a credential', () => {
    const { lines, destination } = capture();
    const logger = createJsonLogger({ service: 'orders', destination });
    logger.info(
      {
        config: {
          databaseUrl: 'postgres://u:pw@h/db',
          adminToken: 'tok',
          privateKey: '-----BEGIN',
        },
        headers: { authorization: 'Bearer abc', 'x-baton-signature': 'v2=sig' },
        secret: 's3cr3t',
      },
      'configured',
    );
    const text = JSON.stringify(lines[0]);
    for (const secret of ['pw@h', 'tok', 'BEGIN', 'Bearer abc', 'v2=sig', 's3cr3t'])
      expect(text).not.toContain(secret);
    expect(text).toContain('[redacted]');
  });
});
