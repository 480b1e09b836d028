import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Ports below this are left alone: many well-known services live there. */
const LOWEST = 10_000;
/** Where the ephemeral range starts on macOS and Windows (IANA); Linux says its own. */
const IANA_EPHEMERAL_START = 49_152;
const ATTEMPTS = 64;

/**
 * A loopback TCP port that nothing listens on, chosen *below* the kernel's
 * ephemeral port range.
 *
 * Why not simply `listen(0)`: that hands out a port from the ephemeral range,
 * which the kernel also gives to every outgoing connection and to every other
 * `listen(0)`. Whoever must listen on the port later — or again, restarting on
 * the same port after a crash, as the tests and the chaos harness do — can find
 * it taken by a client socket in the meantime (EADDRINUSE). Below the range a
 * port is only ever taken by an explicit bind, which the check here sees.
 */
export async function freePort(): Promise<number> {
  const end = ephemeralRangeStart();
  for (let attempt = 0; attempt < ATTEMPTS && end > LOWEST + 1_000; attempt++) {
    const port = randomInt(LOWEST, end);
    if (await canListen(port)) return port;
  }
  return kernelChosenPort();
}

function ephemeralRangeStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (low !== undefined && Number.isInteger(low) && low > 0) return low;
  } catch {
    // Not Linux (or no procfs): the IANA default.
  }
  return IANA_EPHEMERAL_START;
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function kernelChosenPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
