import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonResponse } from '../src/http/http-types.ts';
import { type RunningServer, serveHttp } from '../src/http/node-server.ts';
import { createServiceHandler, type ServiceHandler } from '../src/http/service-handler.ts';
import { SECRET } from './helpers.ts';

/**
 * Limits before work (security review, item 5): a stranger's request is
 * refused on its head — unknown route, wrong method, no credentials —
 * before a byte of its body is read; slow headers and slow bodies are cut
 * off; connections are capped. Raw sockets on loopback, bounded in count
 * and time: each test gives up after a few seconds, which the old server
 * (body read first, Node's 300 s request timeout, no cap) exceeded.
 */

let server: RunningServer;
let handler: ServiceHandler;
let port: number;
let handled = 0;

beforeAll(async () => {
  handler = createServiceHandler({
    auth: { type: 'hmac', secrets: [SECRET] },
    routes: [
      {
        method: 'POST',
        pattern: /^\/things$/,
        describe: '/things',
        handle: async () => {
          handled++;
          return jsonResponse(200, {});
        },
      },
    ],
  });
  server = await serveHttp(handler, {
    maxConnections: 5,
    headersTimeoutMs: 1_000,
    requestTimeoutMs: 1_500,
  });
  port = Number(new URL(server.url).port);
});
afterAll(async () => {
  await server?.close();
});

/**
 * Opens a socket, writes `head`, and resolves with what the server answered
 * — at its first bytes (`until: 'answer'`) or when it closed (`'close'`; ''
 * if it closed without a word) — within `withinMs`.
 */
function exchange(
  head: string,
  withinMs: number,
  trickle?: (s: Socket) => void,
  until: 'answer' | 'close' = 'close',
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer and no close within ${withinMs} ms`));
    }, withinMs);
    socket.on('data', (d) => {
      answer += d.toString('latin1');
      if (until === 'answer') {
        clearTimeout(timer);
        socket.destroy();
        resolve(answer);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(answer);
    });
    socket.on('error', () => {});
    socket.write(head);
    trickle?.(socket);
  });
}

const post = (path: string, extra = '') =>
  `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n${extra}\r\n`;
const SIGNED_LOOKING =
  'x-baton-timestamp: 1700000000\r\nx-baton-nonce: 0123456789abcdef0123\r\nx-baton-signature: v1=00\r\n';

describe('limits before work', () => {
  it('refuses an unknown route, a wrong method and a request without credentials without keeping its body', async () => {
    const before = handled;
    // A body announced past the drain cap is not waited for: the answer comes at once.
    const answered = (head: string) => exchange(head, 3_000, undefined, 'answer');
    const huge = (path: string, method = 'POST') =>
      `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n`;
    expect(await answered(huge('/baton/nothing'))).toMatch(/^HTTP\/1\.1 404/);
    expect(await answered(huge('/baton/things'))).toMatch(/^HTTP\/1\.1 401/);
    expect(await answered(huge('/baton/things', 'GET'))).toMatch(/^HTTP\/1\.1 405/);
    // One that is sent gets its answer when it has been read (and dropped).
    for (const [path, status] of [
      ['/baton/nothing', 404],
      ['/baton/things', 401],
    ] as const) {
      const answer = await fetch(`${server.url}${path}`, { method: 'POST', body: '{"x":1}' });
      expect(answer.status).toBe(status);
    }
    expect(handled).toBe(before);
  });

  it('a refused request whose body follows gets its answer whole, the connection not reset under it', async () => {
    // What real clients do: send the body anyway, many at once. Answering and closing before the
    // body was read reset the connection under the answer now and then — the chaos set's bad input
    // found it (1 unanswered in 2,000); on loopback here it rarely shows, so this guards, the chaos set finds.
    const body = 'x'.repeat(1_500_000); // over maxBodyBytes, like the chaos set's oversized bodies
    // A server with the default connection cap (this file's other one holds five).
    const roomy = await serveHttp(handler);
    const statuses: (number | string)[] = [];
    for (let round = 0; round < 5; round++) {
      const paths = Array.from({ length: 8 }, (_, i) =>
        i % 2 ? '/baton/nothing' : '/baton/things',
      );
      statuses.push(
        ...(await Promise.all(
          paths.map((path) =>
            fetch(`${roomy.url}${path}`, { method: 'POST', body }).then(
              async (answer) => {
                await answer.json();
                return answer.status;
              },
              (e: Error) => `reset: ${e.message} ${String((e.cause as Error)?.message)}`,
            ),
          ),
        )),
      );
    }
    await roomy.close();
    expect(statuses.filter((s) => typeof s === 'string')).toEqual([]);
  });

  it('cuts off a body that trickles in', async () => {
    const answer = await exchange(post('/baton/things', SIGNED_LOOKING), 5_000, (socket) => {
      const drip = setInterval(() => socket.writable && socket.write('{'), 200);
      socket.on('close', () => clearInterval(drip));
    });
    expect(answer === '' || /^HTTP\/1\.1 408/.test(answer)).toBe(true);
  });

  it('cuts off headers that trickle in', async () => {
    const answer = await exchange('POST /baton/things HTTP/1.1\r\nhost: x\r\n', 5_000, (socket) => {
      const drip = setInterval(() => socket.writable && socket.write('x-pad: 1\r\n'), 200);
      socket.on('close', () => clearInterval(drip));
    });
    expect(answer === '' || /^HTTP\/1\.1 408/.test(answer)).toBe(true);
  });

  it('holds at most maxConnections connections at once', async () => {
    const sockets = await Promise.all(
      Array.from({ length: 20 }, () => {
        const socket = connect(port, '127.0.0.1');
        socket.on('error', () => {});
        return new Promise<Socket>((resolve) => socket.on('connect', () => resolve(socket)));
      }),
    );
    const closed = await Promise.all(
      sockets.map(
        (s) =>
          new Promise<boolean>((resolve) => {
            const timer = setTimeout(() => resolve(false), 500);
            s.on('close', () => {
              clearTimeout(timer);
              resolve(true);
            });
          }),
      ),
    );
    for (const s of sockets) s.destroy();
    expect(closed.filter((c) => !c).length).toBeLessThanOrEqual(5);
  });

  it('holds at most maxBodyBytesInFlight of bodies under signatures it cannot check yet', async () => {
    // Each of these announces 1 MB under well-formed (false) signature headers, sends all
    // of it but the last byte, and stalls: a body must be held whole before its signature
    // can be checked. Without a cap, N of them held N MB until the request timeout.
    const capped = await serveHttp(handler, {
      maxBodyBytesInFlight: 3_000_000,
      requestTimeoutMs: 10_000,
    });
    const cappedPort = Number(new URL(capped.url).port);
    const stall = () =>
      new Promise<{ socket: Socket; answer: Promise<string> }>((resolve) => {
        const socket = connect(cappedPort, '127.0.0.1');
        socket.on('error', () => {});
        let text = '';
        const answer = new Promise<string>((done) => {
          socket.on('data', (d) => {
            text += d.toString('latin1');
            done(text);
          });
          socket.on('close', () => done(text));
        });
        socket.on('connect', () => {
          socket.write(post('/baton/things', SIGNED_LOOKING));
          socket.write(Buffer.alloc(999_999, 0x20));
          resolve({ socket, answer });
        });
      });
    const stalled = [];
    for (let i = 0; i < 6; i++) stalled.push(await stall());
    // 3 MB fit; for the rest the server answers 503 instead of holding them (which ones
    // depends on how their bytes interleave: at least three).
    const answered: string[] = [];
    for (const s of stalled) void s.answer.then((a) => answered.push(a));
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(answered.length).toBeGreaterThanOrEqual(3);
    for (const answer of answered) expect(answer).toMatch(/^HTTP\/1\.1 503/);
    // The held ones end (their last byte): refused for their false signature, the budget given back.
    for (const { socket } of stalled) if (socket.writable) socket.write(' ');
    await Promise.all(stalled.map((s) => s.answer));
    const after = await fetch(`${capped.url}/baton/things`, { method: 'POST', body: '{}' });
    expect(after.status).toBe(401);
    for (const { socket } of stalled) socket.destroy();
    await capped.close();
  });

  it('gives back the budget of a body whose client went away before its end', async () => {
    // An attacker who sends most of a body and hangs up, again and again: each
    // abandoned body must give its bytes back, or the budget runs dry for good.
    const capped = await serveHttp(handler, { maxBodyBytesInFlight: 3_000_000 });
    const cappedPort = Number(new URL(capped.url).port);
    for (let i = 0; i < 10; i++) {
      await new Promise<void>((resolve) => {
        const socket = connect(cappedPort, '127.0.0.1');
        socket.on('error', () => {});
        socket.on('connect', () => {
          socket.write(post('/baton/things', SIGNED_LOOKING));
          socket.write(Buffer.alloc(999_999, 0x20), () =>
            setTimeout(() => {
              socket.destroy();
              resolve();
            }, 50),
          );
        });
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    const after = await fetch(`${capped.url}/baton/things`, { method: 'POST', body: '{}' });
    expect(after.status).toBe(401); // read and refused for its signature, not 503 for a spent budget
    await capped.close();
  });
});
