import { visibleText } from '../core/visible-text.ts';

/**
 * HTML built from data nobody vetted (ids, errors, payloads written by any
 * service or user): the `html` template escapes every value it is given,
 * unless the value is itself `Html` made by the template. No other way to
 * put a string into a page exists here — so a `<script>` in a customer's
 * name is shown as text, never run.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** A value a page may hold: escaped text, numbers, trusted `Html`, lists of these; nothing for null. */
export type HtmlValue = Html | string | number | bigint | boolean | null | undefined | HtmlValue[];

const ENTITIES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text as it reads in an element or a quoted attribute; control characters shown as `\uXXXX`. */
export function escapeHtml(text: string): string {
  return visibleText(text).replace(/[&<>"']/g, (c) => ENTITIES[c] as string);
}

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new Html(out);
}

/** A query string from parameters (undefined ones left out), for links built from data. */
export function query(parameters: Readonly<Record<string, string | undefined>>): string {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) if (value) q.set(name, value);
  const text = q.toString();
  return text ? `?${text}` : '';
}

/** Text of several lines (a `<pre>` block): each line escaped, its own line breaks kept. */
export function lines(text: string): Html {
  return new Html(text.split('\n').map(escapeHtml).join('\n'));
}
