// Sends the engine's own endpoints (the hot paths: token, introspection, JWKS...) straight on to it, past Gatehouse's
// routers, none of which serves them; every other request goes to Gatehouse's routes first. A protocol endpoint asked
// with a method it does not answer (POST to the authorization endpoint, GET to the token endpoint) gets 405 with Allow,
// in the protocol's words, rather than the engine's bare "Not Found" (RFC 9110 §15.5.6); so does a page asked with a
// method no router knows (TRACE, PROPFIND), which the routers would answer 501, a server error.
import type { Context, Middleware, Next } from 'koa';
import { HttpError } from '../kit/errors.ts';
import { routeKey, type EngineRoutes } from '../engine-paths.ts';

export function engineOrGatehouse(engineRoutes: EngineRoutes, gatehouseRoutes: Middleware) {
  return function dispatch(ctx: Context, next: Next): Promise<void> {
    const allowed = engineRoutes.at(routeKey(ctx.path))?.methods;
    if (!allowed) return gatehouseRoutes(ctx, next).then(() => { if (ctx.status === 501) refuseUnknownMethod(ctx); });
    // Preflights are the CORS middleware's and the engine's to answer.
    if (ctx.method === 'OPTIONS' || allowed.includes(ctx.method)) return next();
    refuseMethod(ctx, allowed);
  };
}

function refuseMethod(ctx: Context, allowed: readonly string[]): never {
  ctx.set('Allow', allowed.join(', '));
  throw new HttpError(405, `${ctx.path} answers ${allowed.filter((method) => method !== 'HEAD').join(' and ')} only`);
}

/** A method no router implements, at a path a router serves (405, with the Allow it set) or at none (404). */
function refuseUnknownMethod(ctx: Context): void {
  const allowed = ctx.response.get('Allow');
  if (allowed) refuseMethod(ctx, allowed.split(', '));
  ctx.remove('Allow');
  ctx.status = 404;
}
