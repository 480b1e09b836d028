import type { RunningShop } from '../launcher.ts';
import type { FaultProxy } from './fault-proxy.ts';
import { sleep, watchRss } from './flood.ts';

/**
 * A hostile peer (security review, issue 12, item 6): for a bounded window
 * the link from orders to customers answers every request — orders'
 * consumer long-polling customers' feed, its owner lookups — with a body
 * that never ends. Orders' clients must cut each answer at their limit
 * (the shop's: 16 MiB), its memory stay bounded, and once the link is
 * healed its consumer must read through it again.
 */
export interface HostilePeerReport {
  link: string;
  windowMs: number;
  /** Answers the hostile peer started (each cut by orders at its limit). */
  answers: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
  boundMiB: number;
  /** Requests orders sent through the link after it was healed (within 15 s). */
  forwardedAfter: number;
}

/** The shop's response limit for its clients (service-base.ts), ×4 (read, joined, decoded), + 32 MiB. */
export const HOSTILE_PEER_RSS_BOUND_MIB = 4 * 16 + 32;

export async function hostilePeer(
  shop: RunningShop,
  proxies: Map<string, FaultProxy>,
  windowMs = 6_000,
): Promise<HostilePeerReport> {
  const link = 'orders->customers';
  const proxy = proxies.get(link) as FaultProxy;
  const rss = watchRss(shop.process('orders')?.pid);
  const before = proxy.stats();
  try {
    proxy.set({ hostileAnswers: true });
    await sleep(windowMs);
  } finally {
    proxy.heal();
    rss.stop();
  }
  const during = proxy.stats();
  const answers = (during.hostileAnswer ?? 0) - (before.hostileAnswer ?? 0);
  // The consumer backs off after failed fetches (at most 10 s), then reads again.
  const deadline = Date.now() + 15_000;
  let forwardedAfter = 0;
  while (Date.now() < deadline && forwardedAfter === 0) {
    await sleep(250);
    forwardedAfter = (proxy.stats().forwarded ?? 0) - (during.forwarded ?? 0);
  }
  return {
    link,
    windowMs,
    answers,
    rssBeforeMiB: rss.before,
    rssPeakMiB: rss.peak,
    boundMiB: HOSTILE_PEER_RSS_BOUND_MIB,
    forwardedAfter,
  };
}

/** Contained: answers were sent (and cut), memory within the bound, the link used again. */
export function hostilePeerContained(r: HostilePeerReport): boolean {
  return r.answers > 0 && r.rssPeakMiB - r.rssBeforeMiB <= r.boundMiB && r.forwardedAfter > 0;
}
