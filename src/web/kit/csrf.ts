// CSRF protection for Gatehouse's own forms: a random token in a signed, HttpOnly cookie, repeated in a hidden
// field; a POST must bring both and they must match. Over HTTPS the cookie is __Host- prefixed: only this host can
// set it, so a sibling subdomain (same-site, so SameSite does not stop it) cannot plant a pair of its own.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';

const COOKIE = 'gatehouse.csrf';
/** A __Host- cookie must be Secure, for path /, and name no domain. */
const HOST_ONLY_COOKIE = `__Host-${COOKIE}`;

/** The token for the page's forms, issuing a cookie the first time. */
export function csrfToken(ctx: Context): string {
  const name = cookieName(ctx);
  const existing = ctx.cookies.get(name, { signed: true });
  if (existing) return existing;
  const token = randomBytes(24).toString('base64url');
  ctx.cookies.set(name, token, { signed: true, httpOnly: true, sameSite: 'lax', path: '/', secure: ctx.secure, overwrite: true });
  return token;
}

export function csrfTokenMatches(ctx: Context, submitted: unknown): boolean {
  const expected = ctx.cookies.get(cookieName(ctx), { signed: true });
  if (!expected || typeof submitted !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(submitted);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieName(ctx: Context): string {
  return ctx.secure ? HOST_ONLY_COOKIE : COOKIE;
}
