/**
 * Characters that would act on a terminal or a page instead of being
 * shown — C0 controls (escape sequences, carriage returns, newlines inside
 * a value), DEL, C1 controls, and bidirectional overrides that reorder
 * text — as they come from data (ids, errors, payloads) written by anyone.
 * The CLI and the dashboard show them as `\uXXXX`: what an operator reads is
 * what the data holds.
 */
const CONTROLS =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

const escaped = (c: string) => `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`;

/** `text` with every control character shown as `\uXXXX`. */
export function visibleText(text: string): string {
  return text.replace(CONTROLS, escaped);
}

/** A message of several lines, each made visible (its own line breaks kept). */
export function visibleLines(text: string): string {
  return text.split('\n').map(visibleText).join('\n');
}
