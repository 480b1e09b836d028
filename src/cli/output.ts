import { visibleText as visible, visibleLines } from '../index.ts';

export { visible, visibleLines };

/** Where the command writes. The real one is the process's streams; tests may capture. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  /** The error stream is a terminal (progress bars go there only then), and its width. */
  terminal?: () => { columns: number } | undefined;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  terminal: () => (process.stderr.isTTY ? { columns: process.stderr.columns || 80 } : undefined),
};

/** `--json` output: one object, indented for people who read it too; controls escaped (also those JSON leaves raw). */
export function printJson(io: CliIo, value: unknown): void {
  // Its only raw newlines are the indentation's (JSON escapes those inside strings).
  printLines(io, JSON.stringify(value, null, 2).split('\n'));
}

/** Prints lines of human output, data's terminal controls made visible. */
export function printLines(io: CliIo, lines: readonly string[]): void {
  io.out(`${lines.map(visible).join('\n')}\n`);
}

/** An aligned plain-text table; numeric columns are right-aligned. */
export function formatTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string[] {
  const numeric = headers.map(
    (_, c) => rows.length > 0 && rows.every((r) => /^-?[0-9][0-9.]*$|^-$/.test(r[c] ?? '')),
  );
  const widths = headers.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => (numeric[c] ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** Label/value pairs with the values lined up. */
export function formatFields(
  fields: readonly (readonly [string, string])[],
  indent = '  ',
): string[] {
  const width = Math.max(...fields.map(([label]) => label.length));
  return fields.map(([label, value]) => `${indent}${label.padEnd(width)}  ${value}`);
}

/** 0s, 42s, 5m 3s, 2h 5m, 3d 4h. */
export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** An ISO timestamp to the second, with how long ago it was. */
export function formatTime(iso: string | null, now = Date.now()): string {
  if (iso === null) return '-';
  const ago = Math.max(0, (now - Date.parse(iso)) / 1000);
  return `${iso.replace(/\.\d{3}Z$/, 'Z')} (${formatDuration(ago)} ago)`;
}

/** First line of a text, cut to `max` characters, for a table cell. */
export function oneLine(text: string | null, max: number): string {
  if (text === null || text === '') return '-';
  const first = text.split('\n', 1)[0] ?? '';
  return first.length > max ? `${first.slice(0, max - 1)}…` : first;
}

/** "1 dead letter", "2 dead letters". */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}

/** 812 B, 12.3 kB, 4.5 MB (decimal units, as network traffic is usually counted). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < 1_000_000) return `${(bytes / 1000).toFixed(1)} kB`;
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}
