// Every absolute URL Gatehouse writes (discovery, redirects, the engine's endpoints) comes from ISSUER, never
// from the request: a forged Host or X-Forwarded-Host could otherwise point clients, or a shared cache, at
// an attacker's keys and endpoints. Behind a TLS proxy, plain-HTTP requests never get a page or a cookie.
import type { Context, Next } from 'koa';
import { HEALTH_PATHS } from '../health.ts';

export interface CanonicalOriginOptions {
  issuer: string;
  /** Whether X-Forwarded-Proto comes from a proxy we trust (TRUST_PROXY): only then can plain HTTP be told apart. */
  trustProxy: boolean;
}

export function canonicalOrigin({ issuer, trustProxy }: CanonicalOriginOptions) {
  const { host, origin, protocol } = new URL(issuer);
  const httpsOnly = protocol === 'https:' && trustProxy;
  return async function useIssuerOrigin(ctx: Context, next: Next): Promise<void> {
    // Koa and the engine read the host from these headers: from here on they name the issuer's host.
    ctx.req.headers.host = host;
    delete ctx.req.headers['x-forwarded-host'];
    // Load balancers probe the port itself, over plain HTTP; those answers carry no URL and no cookie.
    if (httpsOnly && ctx.protocol !== 'https' && !HEALTH_PATHS.has(ctx.path)) {
      refusePlainHttp(ctx, origin);
      return;
    }
    await next();
  };
}

/** A page or a link followed over plain HTTP goes to HTTPS; anything sent over it may have leaked, and is refused. */
function refusePlainHttp(ctx: Context, origin: string): void {
  ctx.set('Cache-Control', 'no-store');
  if (ctx.method === 'GET' || ctx.method === 'HEAD') {
    ctx.status = 308;
    // The path set on the issuer's URL, never the request target resolved against it: `//evil.example/` or
    // `/\\evil.example/` resolved so is a URL of another host, and the browser would be sent there.
    const location = new URL(origin);
    location.pathname = ctx.path;
    location.search = ctx.querystring;
    ctx.redirect(location.href);
    return;
  }
  ctx.status = 403;
  ctx.body = { error: 'invalid_request', error_description: `this server only accepts HTTPS: use ${origin}` };
}

