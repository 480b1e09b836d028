/** Human-readable output goes through here so `--json` keeps stdout's last line for the JSON object. */
export function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

export function heading(title: string): void {
  say();
  say(`== ${title} ${'='.repeat(Math.max(0, 74 - title.length))}`);
}

/** Prints an aligned two-or-more column table. */
export function table(rows: readonly (readonly (string | number)[])[]): void {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, String(cell).length);
    });
  for (const row of rows) {
    say(
      `  ${row
        .map((cell, i) =>
          typeof cell === 'number'
            ? String(cell).padStart(widths[i] ?? 0)
            : cell.padEnd(widths[i] ?? 0),
        )
        .join('  ')}`,
    );
  }
}

export function yes(ok: boolean): string {
  return ok ? 'yes' : 'NO';
}
