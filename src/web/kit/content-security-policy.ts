// The Content-Security-Policy of Gatehouse's pages: strict, with form-action naming where a form's redirect
// chain may end (browsers enforce it on redirects too). Every response gets it (middleware/security-headers.ts);
// a page whose forms lead to a client's redirect URI widens form-action to that origin.
import { originOf } from '../../urls.ts';

/**
 * The CSP source that allows a URI: its origin, or for a native app's private-use scheme (com.example.app:/cb),
 * which has none, the scheme itself.
 */
function sourceOf(uri: string): string | undefined {
  const origin = originOf(uri);
  if (origin) return origin;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1]?.toLowerCase();
  return scheme && scheme.includes('.') ? `${scheme}:` : undefined;
}

/**
 * formTargets: URIs forms may lead to besides this server (checked already: a client's registered redirect URI),
 * or 'any' where the target is only known to the engine. frames: URIs the page loads in frames (applications'
 * front-channel logout URIs, registered by an administrator).
 */
export function contentSecurityPolicy(formTargets: readonly string[] | 'any' = [], frames: readonly string[] = []): string {
  const formAction = formTargets === 'any'
    ? []
    : [`form-action ${["'self'", ...sourcesOf(formTargets)].join(' ')}`];
  const frameSources = sourcesOf(frames);
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    ...(frameSources.length ? [`frame-src ${frameSources.join(' ')}`] : []),
    ...formAction,
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');
}

function sourcesOf(uris: readonly string[]): string[] {
  return [...new Set(uris.map(sourceOf).filter((source) => source !== undefined))];
}
