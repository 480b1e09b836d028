/**
 * Baton's statements use PostgreSQL's numbered placeholders (`$1`, `$2`, …,
 * a number may repeat). Some query builders take other forms; this splits a
 * statement into its text pieces and the value each placeholder stands for,
 * in order of appearance. Baton's statements put no `$<digit>` inside string
 * literals or dollar quotes, so a plain scan is exact for them.
 */
export function splitPlaceholders(
  text: string,
  values: readonly unknown[] = [],
): { pieces: string[]; params: unknown[] } {
  const pieces: string[] = [];
  const params: unknown[] = [];
  let last = 0;
  for (const match of text.matchAll(/\$(\d+)/g)) {
    const n = Number(match[1]);
    if (n < 1 || n > values.length)
      throw new RangeError(`statement refers to $${n}, but ${values.length} values were given`);
    pieces.push(text.slice(last, match.index));
    params.push(values[n - 1]);
    last = (match.index as number) + match[0].length;
  }
  pieces.push(text.slice(last));
  return { pieces, params };
}
