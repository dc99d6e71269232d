// One JSON log line per request (pino), with a request id that is sent back in X-Request-Id and carried into
// the audit rows the request writes; and each request counted and timed for /metrics, by route pattern.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { Metrics } from '../../operations/metrics.ts';
import { inRequestContext, requestIdFrom } from '../../operations/request-context.ts';
import { HEALTH_PATHS } from '../health.ts';
import { PATHS } from '../paths.ts';

/** The engine's endpoints (oidc-provider's default routes, which Gatehouse keeps), as metric labels. */
const ENGINE_ROUTES = new Set([
  '/auth', '/token', '/me', '/token/introspection', '/token/revocation', '/jwks', '/reg', '/request',
  '/session/end', '/session/end/confirm', '/session/end/success',
  '/.well-known/openid-configuration', '/.well-known/oauth-authorization-server',
]);
const ENGINE_ROUTE_PATTERNS: Array<[RegExp, string]> = [[/^\/auth\/[^/]+$/, '/auth/:uid'], [/^\/reg\/[^/]+$/, '/reg/:clientId']];
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Asked every few seconds by probes and scrapers: logged at debug, so they do not drown the rest. */
const QUIET_PATHS = new Set([...HEALTH_PATHS, PATHS.metrics]);

export function requestLog(logger: Logger, metrics: Metrics) {
  const log = logger.child({ component: 'http' });
  return async function logRequest(ctx: Context, next: Next): Promise<void> {
    const requestId = requestIdFrom(ctx.get('X-Request-Id') || undefined);
    ctx.set('X-Request-Id', requestId);
    const started = performance.now();
    // 'close' comes for every response, whoever wrote it (the engine writes its own), and for aborted ones.
    ctx.res.once('close', () => {
      const seconds = (performance.now() - started) / 1000;
      const route = routeOf(ctx);
      const method = METHODS.has(ctx.method) ? ctx.method : 'OTHER';
      const status = ctx.res.statusCode;
      metrics.requestAnswered(route, method, status, seconds);
      const line = {
        requestId, method, path: ctx.path.slice(0, 200), route, status, durationMs: Math.round(seconds * 10_000) / 10, ip: ctx.ip,
        ...(ctx.res.writableFinished ? {} : { aborted: true }),
      };
      if (QUIET_PATHS.has(ctx.path)) log.debug(line, 'request');
      else log.info(line, `${method} ${line.path} ${status}`);
    });
    await inRequestContext({ requestId }, next);
  };
}

/** A route's pattern (never the path itself: ids in paths would make a label per id), or 'unmatched'. */
function routeOf(ctx: Context): string {
  const matched = (ctx as Context & { _matchedRoute?: string | RegExp })._matchedRoute;
  if (typeof matched === 'string') return matched;
  if (ENGINE_ROUTES.has(ctx.path)) return ctx.path;
  return ENGINE_ROUTE_PATTERNS.find(([pattern]) => pattern.test(ctx.path))?.[1] ?? 'unmatched';
}
