import os from 'node:os';
import { percentile, round, sleep, wallMs } from './stats.ts';

/**
 * A closed loop that keeps `inFlight` units of work going: each slot starts
 * one, waits for it to end, starts the next. Completions inside the measure
 * window (after the warm-up) give the throughput; CPU use is sampled over the
 * same window.
 */
export interface Window {
  completed: number;
  seconds: number;
  perSec: number;
  /** Ids (or indexes) of units completed inside the window. */
  ids: string[];
  /** Client-side start→end latency of the units completed inside the window. */
  latenciesMs: number[];
  cpu: CpuUse;
}

export interface CpuUse {
  /** Cores busy on the whole machine (both PostgreSQL clusters and this process), on average. */
  machineBusyCores: number;
  /** Cores used by this Node process (orchestrator and participant both run in it). */
  nodeCores: number;
}

export async function closedLoop(options: {
  inFlight: number;
  warmupMs: number;
  measureMs: number;
  /** Runs one unit to its end (id unique per unit). */
  unit: (id: string) => Promise<void>;
  prefix: string;
}): Promise<Window> {
  let n = 0;
  let stopping = false;
  const start = wallMs();
  const windowStart = start + options.warmupMs;
  const windowEnd = windowStart + options.measureMs;
  const ids: string[] = [];
  const latencies: number[] = [];
  let cpuStart: ReturnType<typeof cpuSnapshot> | undefined;
  const timer = setTimeout(() => {
    cpuStart = cpuSnapshot();
  }, options.warmupMs);
  let cpu: CpuUse = { machineBusyCores: Number.NaN, nodeCores: Number.NaN };
  const stopTimer = setTimeout(() => {
    stopping = true;
    if (cpuStart) cpu = cpuSince(cpuStart);
  }, options.warmupMs + options.measureMs);
  await Promise.all(
    Array.from({ length: options.inFlight }, async () => {
      while (!stopping) {
        const id = `${options.prefix}-${n++}`;
        const t0 = wallMs();
        await options.unit(id);
        const t1 = wallMs();
        if (t1 >= windowStart && t1 < windowEnd) {
          ids.push(id);
          latencies.push(t1 - t0);
        }
      }
    }),
  );
  clearTimeout(timer);
  clearTimeout(stopTimer);
  const seconds = options.measureMs / 1000;
  return {
    completed: ids.length,
    seconds,
    perSec: round(ids.length / seconds, 1),
    ids,
    latenciesMs: latencies,
    cpu,
  };
}

export function latencySummary(ms: readonly number[]): {
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
} {
  return {
    p50Ms: round(percentile(ms, 50), 1),
    p99Ms: round(percentile(ms, 99), 1),
    meanMs: round(ms.reduce((a, b) => a + b, 0) / Math.max(1, ms.length), 1),
  };
}

function cpuSnapshot(): { at: number; busy: number; idle: number; node: NodeJS.CpuUsage } {
  let busy = 0;
  let idle = 0;
  for (const c of os.cpus()) {
    busy += c.times.user + c.times.nice + c.times.sys + c.times.irq;
    idle += c.times.idle;
  }
  return { at: wallMs(), busy, idle, node: process.cpuUsage() };
}

function cpuSince(s: ReturnType<typeof cpuSnapshot>): CpuUse {
  const e = cpuSnapshot();
  const wall = e.at - s.at;
  const node = process.cpuUsage(s.node);
  return {
    machineBusyCores: round((e.busy - s.busy) / wall, 2),
    nodeCores: round((node.user + node.system) / 1000 / wall, 2),
  };
}

/** Waits until `done()` or the timeout; returns whether it was done. */
export async function until(done: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = wallMs() + timeoutMs;
  while (wallMs() < deadline) {
    if (await done()) return true;
    await sleep(20);
  }
  return false;
}
