// CSRF protection for Gatehouse's own forms: a random token in a signed, HttpOnly cookie, repeated in a hidden
// field; a POST must bring both and they must match. Over HTTPS the cookie is __Host- prefixed: only this host can
// set it, so a sibling subdomain (same-site, so SameSite does not stop it) cannot plant a pair of its own.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';

const COOKIE = 'gatehouse.csrf';
/** A __Host- cookie must be Secure, for path /, and name no domain. */
const HOST_ONLY_COOKIE = `__Host-${COOKIE}`;
const SCOPE = Symbol('csrf scope');

/**
 * Makes the tokens of this request's page and form those of `scope` alone (the account console's signed-in
 * session): the cookie is the browser's, so without it a page left open by one person, who then signed out,
 * would submit as the next person signed in.
 */
export function scopeCsrfTokens(ctx: Context, scope: string): void {
  (ctx.state as Record<symbol, unknown>)[SCOPE] = scope;
}

/** The token for the page's forms, issuing a cookie the first time. */
export function csrfToken(ctx: Context): string {
  const name = cookieName(ctx);
  let browserToken = ctx.cookies.get(name, { signed: true });
  if (!browserToken) {
    browserToken = randomBytes(24).toString('base64url');
    ctx.cookies.set(name, browserToken, { signed: true, httpOnly: true, sameSite: 'lax', path: '/', secure: ctx.secure, overwrite: true });
  }
  return scoped(ctx, browserToken);
}

export function csrfTokenMatches(ctx: Context, submitted: unknown): boolean {
  const browserToken = ctx.cookies.get(cookieName(ctx), { signed: true });
  if (!browserToken || typeof submitted !== 'string') return false;
  const a = Buffer.from(scoped(ctx, browserToken));
  const b = Buffer.from(submitted);
  return a.length === b.length && timingSafeEqual(a, b);
}

function scoped(ctx: Context, browserToken: string): string {
  const scope = (ctx.state as Record<symbol, unknown>)[SCOPE] as string | undefined;
  return scope === undefined ? browserToken : createHmac('sha256', browserToken).update(scope).digest('base64url');
}

function cookieName(ctx: Context): string {
  return ctx.secure ? HOST_ONLY_COOKIE : COOKIE;
}
