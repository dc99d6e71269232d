// Sends the engine's own endpoints (the hot paths: token, introspection, JWKS...) straight on to it, past Gatehouse's
// routers, none of which serves them; every other request goes to Gatehouse's routes first. A protocol endpoint asked
// with a method it does not answer (POST to the authorization endpoint, GET to the token endpoint) gets 405 with Allow,
// in the protocol's words, rather than the engine's bare "Not Found" (RFC 9110 §15.5.6).
import type { Context, Middleware, Next } from 'koa';
import { HttpError } from '../kit/errors.ts';
import { routeKey } from '../engine-paths.ts';

/** `engineMethods`: what the engine answers at each of its paths (src/web/engine-paths.ts), by route key. */
export function engineOrGatehouse(engineMethods: ReadonlyMap<string, readonly string[]>, gatehouseRoutes: Middleware) {
  return function dispatch(ctx: Context, next: Next): Promise<void> {
    const allowed = engineMethods.get(routeKey(ctx.path));
    if (!allowed) return gatehouseRoutes(ctx, next);
    // Preflights are the CORS middleware's and the engine's to answer.
    if (ctx.method === 'OPTIONS' || allowed.includes(ctx.method)) return next();
    ctx.set('Allow', allowed.join(', '));
    throw new HttpError(405, `${ctx.path} answers ${allowed.filter((method) => method !== 'HEAD').join(' and ')} only`);
  };
}
