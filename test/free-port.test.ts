import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../src/db/free-port.ts';

function ephemeralStart(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  } catch {
    return undefined;
  }
}

describe('freePort', () => {
  it('gives a port below the ephemeral range that can be listened on', async () => {
    const start = ephemeralStart();
    for (let i = 0; i < 20; i++) {
      const port = await freePort();
      if (start !== undefined && start > 11_000) {
        expect(port).toBeGreaterThanOrEqual(10_000);
        expect(port).toBeLessThan(start);
      }
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', resolve);
      });
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
