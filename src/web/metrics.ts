// /metrics for Prometheus: on the main port only to callers presenting METRICS_TOKEN (a bearer token), or
// without one on a port of its own (METRICS_PORT), which only the scraper's network should reach.
import { timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import type { Metrics } from '../operations/metrics.ts';
import { PATHS } from './paths.ts';

/** `access`: 'open' on METRICS_PORT; on the main port, the token, or none (not served there). */
export function metricsRoutes(metrics: Metrics, access: { token: string } | 'open' | 'not-served'): Router {
  const router = new Router();
  router.get(PATHS.metrics, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (access === 'not-served') {
      ctx.status = 403;
      ctx.body = { error: 'forbidden', error_description: 'metrics are served on METRICS_PORT, or on this port with METRICS_TOKEN' };
      return;
    }
    if (access !== 'open' && !presents(ctx.get('Authorization'), access.token)) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer realm="metrics"');
      ctx.body = { error: 'invalid_token', error_description: 'metrics need the METRICS_TOKEN as a bearer token' };
      return;
    }
    ctx.type = metrics.contentType;
    ctx.body = await metrics.text();
  });
  return router;
}

function presents(authorization: string, token: string): boolean {
  const given = Buffer.from(/^Bearer (.+)$/i.exec(authorization)?.[1] ?? '');
  const expected = Buffer.from(token);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
