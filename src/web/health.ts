// Liveness and readiness for orchestrators: /healthz says the process answers, /readyz that the
// database and the store answer too.
import Router from '@koa/router';
import { PATHS } from './paths.ts';

export interface Pingable {
  ping(): Promise<void>;
}

/** Asked by orchestrators of the port itself (plain HTTP, any Host): see canonical-origin.ts. */
export const HEALTH_PATHS: ReadonlySet<string> = new Set([PATHS.live, PATHS.ready]);

export function healthRoutes(dependencies: { database: Pingable; store: Pingable }): Router {
  const router = new Router();
  router.get(PATHS.live, (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get(PATHS.ready, async (ctx) => {
    const entries = await Promise.all(Object.entries(dependencies).map(async ([name, dependency]) => {
      try {
        await dependency.ping();
        return [name, 'up'] as const;
      } catch {
        return [name, 'down'] as const;
      }
    }));
    const checks = Object.fromEntries(entries);
    const ready = entries.every(([, state]) => state === 'up');
    ctx.set('Cache-Control', 'no-store');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'unavailable', checks };
  });
  return router;
}
