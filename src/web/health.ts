// Liveness and readiness for orchestrators: /healthz says the process answers, /readyz that the
// database and the store answer too, and that it is not shutting down.
import { setTimeout } from 'node:timers/promises';
import Router from '@koa/router';
import { PATHS } from './paths.ts';

export interface Pingable {
  ping(): Promise<void>;
}

/**
 * How long /readyz waits for each dependency: one that takes longer is as good as down to a probe (Kubernetes waits
 * 1 s by default), and an answer that waits for a hung database's query timeout would only pile probes up.
 */
export const READY_CHECK_TIMEOUT_MS = 2000;

/** Asked by orchestrators of the port itself (plain HTTP, any Host): see canonical-origin.ts. */
export const HEALTH_PATHS: ReadonlySet<string> = new Set([PATHS.live, PATHS.ready]);

export function healthRoutes(dependencies: { database: Pingable; store: Pingable }, stopping: () => boolean): Router {
  const router = new Router();
  router.get(PATHS.live, (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get(PATHS.ready, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    if (stopping()) {
      // Finishing the requests under way: a load balancer should send no more.
      ctx.status = 503;
      ctx.body = { status: 'stopping' };
      return;
    }
    const entries = await Promise.all(Object.entries(dependencies).map(async ([name, dependency]) => {
      try {
        await Promise.race([dependency.ping(), setTimeout(READY_CHECK_TIMEOUT_MS, undefined, { ref: false }).then(() => Promise.reject(new Error('too slow')))]);
        return [name, 'up'] as const;
      } catch {
        return [name, 'down'] as const;
      }
    }));
    const checks = Object.fromEntries(entries);
    const ready = entries.every(([, state]) => state === 'up');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'unavailable', checks };
  });
  return router;
}
