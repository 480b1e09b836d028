/**
 * The history a chaos run records: one entry per command the workload sent
 * to the shop's public APIs, with what the client saw. The checker compares
 * it with what the databases hold once the shop is quiet.
 *
 * Outcomes (what the client can know, not what happened):
 *   ok       a 2xx answer: the command took effect (or had already, for a repeat)
 *   fail     a 4xx answer: refused; nothing changed
 *   unknown  a 5xx answer, a timeout, a reset or a dropped response: it may or
 *            may not have happened — the checker allows both
 *
 * Stored as JSON Lines (one entry a line), appended as the run goes, so a
 * killed harness leaves a readable file (at worst a torn last line).
 */
import { createWriteStream, readFileSync, type WriteStream, writeFileSync } from 'node:fs';

export type Outcome = 'ok' | 'fail' | 'unknown';
export type Operation = 'register' | 'place' | 'cancel' | 'delete' | 'update';
export const OPERATIONS: readonly Operation[] = ['register', 'place', 'cancel', 'delete', 'update'];

/**
 * One command and its outcome. `args` by operation:
 *   register { id, name, address }      POST   /customers
 *   place    { id, customerId, points } POST   /orders           (saga `place:<id>`)
 *   cancel   { orderId }                POST   /orders/<id>/cancel (saga `cancel:<orderId>`)
 *   delete   { id }                     DELETE /customers/<id>
 *   update   { id, address }            PATCH  /customers/<id>
 * `startedAt`/`endedAt` are the client's ms clock (Date.now()): an effect, if
 * any, happened in between — the checker uses them to order commands on one id.
 * A command retried with the same id is one entry whose outcome covers every
 * attempt (`outcomeOfAttempts`): a 4xx after an unanswered attempt is not a
 * `fail`, since the first attempt may have taken effect.
 */
export interface HistoryEntry {
  seq: number;
  op: Operation;
  args: Record<string, unknown>;
  outcome: Outcome;
  status?: number;
  body?: unknown;
  startedAt: number;
  endedAt: number;
}

/** The outcome of an HTTP answer (or of no answer: `status` undefined). */
export function outcomeOf(status: number | undefined): Outcome {
  if (status === undefined || status >= 500) return 'unknown';
  if (status >= 200 && status < 300) return 'ok';
  return 'fail';
}

/**
 * The outcome of a command sent several times with the same id (idempotent):
 * ok if any attempt was acknowledged, unknown if any may have taken effect
 * unseen, fail only if every attempt was refused.
 */
export function outcomeOfAttempts(statuses: readonly (number | undefined)[]): Outcome {
  const outcomes = statuses.map(outcomeOf);
  if (outcomes.includes('ok')) return 'ok';
  if (outcomes.includes('unknown') || outcomes.length === 0) return 'unknown';
  return 'fail';
}

/** Writes a whole history (one JSON object a line). */
export function writeHistory(path: string, entries: readonly HistoryEntry[]): void {
  writeFileSync(path, entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
}

/** Appends entries as they happen; `close` flushes. */
export interface HistoryWriter {
  append(entry: HistoryEntry): void;
  close(): Promise<void>;
}

export function historyWriter(path: string): HistoryWriter {
  const stream: WriteStream = createWriteStream(path, { flags: 'a' });
  return {
    append: (entry) => void stream.write(`${JSON.stringify(entry)}\n`),
    close: () =>
      new Promise((resolve, reject) =>
        stream.end((error?: Error | null) => (error ? reject(error) : resolve())),
      ),
  };
}

/**
 * Reads a history file. A torn last line (the writer was killed mid-write) is
 * dropped; any other malformed line is an error naming its line number.
 */
export function readHistory(path: string): HistoryEntry[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const entries: HistoryEntry[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    const isLast = lines.slice(index + 1).every((rest) => rest.trim() === '');
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      if (isLast) return;
      throw new Error(`${path}:${index + 1}: not JSON (${(error as Error).message})`);
    }
    const problem = entryProblem(parsed);
    if (problem) throw new Error(`${path}:${index + 1}: not a history entry: ${problem}`);
    entries.push(parsed as HistoryEntry);
  });
  return entries;
}

function entryProblem(value: unknown): string | undefined {
  if (!value || typeof value !== 'object') return 'not an object';
  const e = value as Record<string, unknown>;
  if (!OPERATIONS.includes(e.op as Operation)) return `op ${JSON.stringify(e.op)}`;
  if (!['ok', 'fail', 'unknown'].includes(e.outcome as string))
    return `outcome ${JSON.stringify(e.outcome)}`;
  if (!e.args || typeof e.args !== 'object') return 'args missing';
  for (const field of ['seq', 'startedAt', 'endedAt'])
    if (typeof e[field] !== 'number') return `${field} missing`;
  return undefined;
}
