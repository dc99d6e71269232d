// CSRF protection for Gatehouse's own forms: a random token in a signed, HttpOnly cookie scoped to the
// page's path, repeated in a hidden field; a POST must bring both and they must match.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';

const COOKIE = 'gatehouse.csrf';

/** The token for the page's forms, issuing a cookie the first time. */
export function csrfToken(ctx: Context, cookiePath: string): string {
  const existing = ctx.cookies.get(COOKIE, { signed: true });
  if (existing) return existing;
  const token = randomBytes(24).toString('base64url');
  ctx.cookies.set(COOKIE, token, { signed: true, httpOnly: true, sameSite: 'lax', path: cookiePath, overwrite: true });
  return token;
}

export function csrfTokenMatches(ctx: Context, submitted: unknown): boolean {
  const expected = ctx.cookies.get(COOKIE, { signed: true });
  if (!expected || typeof submitted !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(submitted);
  return a.length === b.length && timingSafeEqual(a, b);
}
