// CORS preflights to the protocol endpoints, decided before the engine sees them: the engine answers any
// preflight for any Origin, as a preflight names no client for clientBasedCORS to ask about. Discovery and
// JWKS stay open to every origin; token, userinfo and revocation only to a registered single-page app's.
import type { Context, Next } from 'koa';
import type Provider from 'oidc-provider';
import { BROWSER_ENDPOINTS } from '../../oidc/provider.ts';
import type { ClientService } from '../../clients/clients.ts';
import { DISCOVERY_PATHS, routeKey, routePaths } from '../engine-paths.ts';

export interface CorsPreflightOptions {
  provider: Pick<Provider, 'pathFor'>;
  /** Says whether a registered single-page app may call from an origin (kept in memory, see client-cache.ts). */
  clients: Pick<ClientService, 'isSinglePageAppOrigin'>;
}

/** Open to every origin: the engine's discovery documents and its JWKS route. */
const OPEN_ROUTES = ['jwks'];

/**
 * An allowed preflight goes on to the engine, which answers it as before. Any other is refused with a 403
 * that carries no Access-Control-Allow-* header, which fails it in the browser. Everything that is not a
 * preflight passes untouched: an access-control-* header set here would make the engine skip its own
 * clientBasedCORS check of the real request.
 */
export function corsPreflights({ provider, clients }: CorsPreflightOptions) {
  const open = new Set([...DISCOVERY_PATHS, ...routePaths(provider, OPEN_ROUTES)].map(routeKey));
  const singlePageApp = new Set(routePaths(provider, [...BROWSER_ENDPOINTS]).map(routeKey));

  return async function answerCorsPreflight(ctx: Context, next: Next): Promise<void> {
    if (ctx.method !== 'OPTIONS' || !ctx.get('Access-Control-Request-Method')) return next();
    const path = routeKey(ctx.path);
    const origin = ctx.get('Origin');
    if (open.has(path)) return next();
    if (singlePageApp.has(path) && origin && await clients.isSinglePageAppOrigin(origin)) return next();
    ctx.vary('Origin');
    ctx.status = 403;
  };
}
