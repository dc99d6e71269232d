// Security headers on every response. Pages get a strict CSP; form-action must also name where a form's
// redirect chain ends (the client's redirect URI), because browsers enforce it on redirects too.
// script-src is present so the engine can add the hash of the one inline script it writes (form_post).
import type { Context, Next } from 'koa';
import { contentSecurityPolicy } from '../kit/content-security-policy.ts';

export interface SecurityHeaderOptions {
  https: boolean;
  /** Paths whose pages post to a client the engine has already checked (the authorization endpoint's form_post page). */
  postsToClient: (path: string) => boolean;
}

export function securityHeaders(options: SecurityHeaderOptions) {
  // The same two policies for every response (a page that needs another sets its own): made once.
  const policy = contentSecurityPolicy([]);
  const postingPolicy = contentSecurityPolicy('any');
  return async function setSecurityHeaders(ctx: Context, next: Next): Promise<void> {
    // Straight on the response: Koa's ctx.set makes arrays for each header it sets, garbage on every request.
    const { res } = ctx;
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Content-Security-Policy', options.postsToClient(ctx.path) ? postingPolicy : policy);
    if (options.https) res.setHeader('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    await next();
  };
}
