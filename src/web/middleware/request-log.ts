// One JSON log line per request (pino), with a request id that is sent back in X-Request-Id and carried into
// the audit rows the request writes; and each request counted and timed for /metrics, by route pattern.
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { Metrics } from '../../operations/metrics.ts';
import { inRequestContext, requestIdFrom } from '../../request-context.ts';
import { HEALTH_PATHS } from '../health.ts';
import { PATHS } from '../paths.ts';
import { routeKey, type EngineRoutes } from '../engine-paths.ts';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
const CLIENT_CLOSED_REQUEST = 499;
/** Asked every few seconds by probes and scrapers: logged at debug, so they do not drown the rest. */
const QUIET_PATHS = new Set([...HEALTH_PATHS, PATHS.metrics]);

export function requestLog(logger: Logger, metrics: Metrics, engineRoutes: EngineRoutes) {
  // Without the logger's redaction (a tenth of a cheap request's time): these lines hold only the fields below,
  // chosen here, and never a query string, header or body where a credential could be.
  const log = logger.child({ component: 'http' }, { redact: [] });
  return async function logRequest(ctx: Context, next: Next): Promise<void> {
    const requestId = requestIdFrom(ctx.get('X-Request-Id') || undefined);
    // Straight on the response, as the security headers are: Koa's ctx.set makes garbage on every request.
    ctx.res.setHeader('X-Request-Id', requestId);
    const started = performance.now();
    // Read now: once a client has gone, its socket no longer knows its address.
    const ip = ctx.ip;
    // 'close' comes for every response, whoever wrote it (the engine writes its own), and for aborted ones.
    ctx.res.once('close', () => {
      const seconds = (performance.now() - started) / 1000;
      const route = routeOf(ctx, engineRoutes);
      const method = METHODS.has(ctx.method) ? ctx.method : 'OTHER';
      // A client that went before any answer was sent gets none; Koa's preset 404 would read as one. 499 is nginx's
      // "client closed request", so that disconnects are counted apart from what the server answered.
      const status = ctx.res.headersSent ? ctx.res.statusCode : CLIENT_CLOSED_REQUEST;
      metrics.requestAnswered(route, method, status, seconds);
      const line = {
        requestId, method, path: ctx.path.slice(0, 200), route, status, durationMs: Math.round(seconds * 10_000) / 10, ip,
        ...(ctx.res.writableFinished ? {} : { aborted: true }),
      };
      if (QUIET_PATHS.has(ctx.path)) log.debug(line, 'request');
      else log.info(line, `${method} ${line.path} ${status}`);
    });
    await inRequestContext({ requestId }, next);
  };
}

/**
 * Requests Node's HTTP parser refuses before the app sees them (headers too large, a malformed Content-Length…)
 * get their answer as Node would give it (431, 408 or 400), and are logged and counted too, under the route
 * 'unparsed': a flood of them is otherwise invisible. Only the parser's error code is logged, never the bytes.
 */
export function logUnreadableRequests(server: Server, logger: Logger, metrics: Metrics): void {
  const log = logger.child({ component: 'http' }, { redact: [] });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    // A connection reset is no request: nothing to answer or to tell. Nor is there a place for an answer on a
    // connection whose previous one is being written (Node's own handler checks the same).
    const answering = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (error.code === 'ECONNRESET' || !socket.writable || answering?.headersSent) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    metrics.requestAnswered('unparsed', 'OTHER', status, 0);
    log.info({ route: 'unparsed', status, error: error.code, ip: socket.remoteAddress }, `unreadable request ${status}`);
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n\r\n`);
  });
}

/** A route's pattern (never the path itself: ids in paths would make a label per id), or 'unmatched'. */
function routeOf(ctx: Context, engineRoutes: EngineRoutes): string {
  const matched = (ctx as Context & { _matchedRoute?: string | RegExp })._matchedRoute;
  if (typeof matched === 'string') return matched;
  return engineRoutes.at(routeKey(ctx.path))?.route ?? 'unmatched';
}
