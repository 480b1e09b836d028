import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { visibleText } from '../src/core/visible-text.ts';
import { Html, html } from '../src/dashboard/html.ts';
import { OperatorSessions } from '../src/dashboard/operator-sessions.ts';

/*
 * What the dashboard's pages rest on, attacked with generated input: no
 * string from data can become markup, and no cookie but one the service
 * made (intact, unexpired, for the current tokens) opens a session.
 */
const hostile = fc.oneof(
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }),
  fc
    .array(
      fc.constantFrom(
        '<',
        '>',
        '&',
        '"',
        "'",
        '<script>',
        '</textarea>',
        '\u202e',
        '\u001b[2J',
        '\n',
        'a',
      ),
    )
    .map((parts) => parts.join('')),
);

describe('the html template', () => {
  it('escapes every interpolated string: no tag, quote or control character survives', () => {
    const decoded = (t: string) =>
      t
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&quot;/g, '"')
        .replace(/&#39;/g, "'")
        .replace(/&amp;/g, '&');
    fc.assert(
      fc.property(hostile, (text) => {
        const out = html`${text}`.text;
        // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
        expect(out).not.toMatch(/[<>"'\u0000-\u0008\u000a-\u001f\u007f-\u009f\u202a-\u202e]/);
        // Only the template's own quotes remain: an attribute cannot be closed from data.
        expect(html`<a title="${text}">`.text.split('"').length).toBe(3);
        // What a browser shows is what the data held (control characters made visible).
        expect(decoded(out)).toBe(visibleText(text));
      }),
    );
  });

  it('keeps Html made by the template, and escapes lists of strings', () => {
    const inner = html`<b>${'<i>'}</b>`;
    expect(html`<p>${inner}</p>`.text).toBe('<p><b>&lt;i&gt;</b></p>');
    expect(html`${['<a>', 1, null, undefined, false]}`.text).toBe('&lt;a&gt;1');
    // A string that looks like Html is still a string.
    expect(html`${'<b>x</b>'}`.text).toBe('&lt;b&gt;x&lt;/b&gt;');
    expect(new Html('<b>').toString()).toBe('<b>');
  });
});

describe('operator sessions', () => {
  const TOKENS = { tokens: ['operator-token-0123456789'] };

  it('refuses short or missing tokens at construction', () => {
    expect(() => new OperatorSessions({ tokens: ['short'] }, 60_000)).toThrow(
      /16 or more characters/,
    );
    expect(() => new OperatorSessions({ tokens: [] }, 60_000)).toThrow(/at least one token/);
    expect(() => new OperatorSessions(undefined as never, 60_000)).toThrow(/operators.tokens/);
  });

  it('accepts only a listed token', () => {
    const sessions = new OperatorSessions(TOKENS, 60_000);
    expect(sessions.tokenAccepted('operator-token-0123456789')).toBe(true);
    fc.assert(
      fc.property(fc.string(), (guess) => {
        fc.pre(guess !== 'operator-token-0123456789');
        expect(sessions.tokenAccepted(guess)).toBe(false);
      }),
    );
  });

  it('opens a session only for its own intact, unexpired cookie', () => {
    let now = 1_000_000;
    const sessions = new OperatorSessions(TOKENS, 60_000, () => now);
    const SESSION_COOKIE = sessions.cookieName;
    const { cookie } = sessions.open();
    const header = `other=1; ${SESSION_COOKIE}=${cookie}`;
    const session = sessions.fromCookies(header);
    expect(session?.csrf).toBeTruthy();
    // Any one character changed: refused.
    fc.assert(
      fc.property(fc.nat(cookie.length - 1), fc.string({ minLength: 1, maxLength: 1 }), (at, c) => {
        fc.pre(cookie[at] !== c);
        const changed = `${cookie.slice(0, at)}${c}${cookie.slice(at + 1)}`;
        expect(sessions.fromCookies(`${SESSION_COOKIE}=${changed}`)).toBeUndefined();
      }),
    );
    // The expiry pushed forward by hand: the MAC no longer matches.
    const [id, expires, mac] = cookie.split('.');
    expect(
      sessions.fromCookies(`${SESSION_COOKIE}=${id}.${Number(expires) + 1e9}.${mac}`),
    ).toBeUndefined();
    // Another service's tokens: another key.
    expect(
      new OperatorSessions({ tokens: ['another-token-0123456789'] }, 60_000, () => now).fromCookies(
        header,
      ),
    ).toBeUndefined();
    // CSRF: only this session's token.
    expect(sessions.csrfAccepted(session!, session!.csrf)).toBe(true);
    expect(sessions.csrfAccepted(session!, null)).toBe(false);
    expect(sessions.csrfAccepted(session!, `${session!.csrf}x`)).toBe(false);
    now += 60_001;
    expect(sessions.fromCookies(header)).toBeUndefined(); // expired
  });
});
