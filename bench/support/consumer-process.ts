import { type ChildProcess, fork } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ConsumerChildConfig } from './consumer-config.ts';

const CHILD = fileURLToPath(new URL('./consumer-child.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A running consumer child: sample its memory, stop it, read its peak RSS. */
export interface ConsumerProcess {
  pid: number;
  /** Largest VmRSS seen by sampling so far (MiB). */
  sampledRssMbMax(): number;
  /** Stops the consumer cleanly; returns its peak RSS (VmHWM, MiB) and logged errors. */
  stop(): Promise<{ vmHwmMb: number; errors: number }>;
  /** Kills the child (for error paths). */
  kill(): void;
}

export async function startConsumerProcess(config: ConsumerChildConfig): Promise<ConsumerProcess> {
  const child = fork(CHILD, [], {
    cwd: REPO_ROOT,
    execArgv: ['--import', 'tsx'],
    env: { ...process.env, BENCH_CONSUMER_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not start the consumer child process');
  await nextMessage(child, 'ready', 30_000);
  let maxRssKb = 0;
  const sampler = setInterval(() => {
    readFile(`/proc/${pid}/status`, 'utf8')
      .then((status) => {
        maxRssKb = Math.max(maxRssKb, Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0));
      })
      .catch(() => {});
  }, 200);
  return {
    pid,
    sampledRssMbMax: () => maxRssKb / 1024,
    async stop() {
      clearInterval(sampler);
      child.send({ type: 'stop' });
      const stopped = await nextMessage(child, 'stopped', 60_000);
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
      return {
        vmHwmMb: stopped.vmHwmKb / 1024,
        errors: stopped.errors,
      };
    },
    kill() {
      clearInterval(sampler);
      child.kill('SIGKILL');
    },
  };
}

function nextMessage<T extends ChildMessage['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
): Promise<Extract<ChildMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      child.kill('SIGKILL');
      reject(new Error(`consumer child sent no "${type}" within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (message: ChildMessage) => {
      if (message.type === 'failed') {
        cleanup();
        reject(new Error(`consumer child failed: ${message.message}`));
      } else if (message.type === type) {
        cleanup();
        resolve(message as Extract<ChildMessage, { type: T }>);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`consumer child exited (code ${code}) before "${type}"`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}
