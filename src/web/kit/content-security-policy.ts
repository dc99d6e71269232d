// The Content-Security-Policy of Gatehouse's pages: strict, with form-action naming where a form's redirect
// chain may end (browsers enforce it on redirects too). Every response gets it (middleware/security-headers.ts);
// a page whose forms lead to a client's redirect URI widens form-action to that origin.
import { originOf } from '../../urls.ts';

/** formTargets: origins forms may lead to besides this server's, or 'any' where the target is only known to the engine. */
export function contentSecurityPolicy(formTargets: readonly string[] | 'any' = []): string {
  const formAction = formTargets === 'any'
    ? []
    : [`form-action ${["'self'", ...new Set(formTargets.map(originOf).filter((origin) => origin !== undefined))].join(' ')}`];
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    ...formAction,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}
