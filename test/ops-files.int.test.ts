import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBaton } from '../src/index.ts';
import type { TestDatabase } from '../src/testing/index.ts';
import { freshDatabase } from './helpers.ts';

/*
 * The sample Grafana dashboard and alert rules (ops/) name only metrics
 * Baton exports: a renamed metric would leave a panel empty and an alert
 * silent, with nothing to say so.
 */
let database: TestDatabase;
let exported: Set<string>;

beforeAll(async () => {
  database = await freshDatabase('ops_files');
  const text = await createBaton({ db: database.db, service: 'orders' }).metrics.text();
  exported = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1] as string));
});
afterAll(async () => {
  await database?.drop();
});

/** Metric names in a file; histogram series (_bucket, _count, _sum) stand for their family. */
function namesIn(path: string): string[] {
  const text = readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');
  return [...new Set([...text.matchAll(/\bbaton_[a-z_]+/g)].map((m) => m[0]))].map((n) =>
    n.replace(/_(bucket|count|sum)$/, ''),
  );
}

describe('ops/', () => {
  it.each(['ops/grafana-dashboard.json', 'ops/prometheus-alerts.yml'])(
    '%s names only exported metrics',
    (path) => {
      const names = namesIn(path);
      expect(names.length).toBeGreaterThan(5);
      expect(names.filter((n) => !exported.has(n))).toEqual([]);
    },
  );

  it('the dashboard is valid JSON with a panel per figure', () => {
    const dashboard = JSON.parse(
      readFileSync(new URL('../ops/grafana-dashboard.json', import.meta.url), 'utf8'),
    ) as { panels: { targets: { expr: string }[] }[] };
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(10);
    for (const panel of dashboard.panels) expect(panel.targets.length).toBeGreaterThan(0);
  });
});
