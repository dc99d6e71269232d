// The engine's session cookie, written from the account console: pointed at a session whose identifier
// the console rotated, or cleared when the console signed the browser out.
import type { Context } from 'koa';
import type Provider from 'oidc-provider';

/**
 * Sets the cookie as the engine does (its cookies.long options, signed with the same keys; see
 * lib/shared/session.js): a session that is not transient gets an expiry, so the browser keeps it as
 * long as the session lives; null clears it. The cookie holds the session's id, its jti.
 */
export function setSessionCookie(ctx: Context, provider: Provider, session: { jti: string; exp?: number | undefined; transient?: boolean | undefined } | null): void {
  const expires = session && !session.transient && session.exp ? new Date(session.exp * 1000) : undefined;
  ctx.cookies.set(provider.cookieName('session'), session?.jti ?? null, { path: '/', signed: true, httpOnly: true, sameSite: 'lax', ...(expires ? { expires } : {}) });
}
