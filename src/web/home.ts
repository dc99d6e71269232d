// The issuer's own address (/): a small page saying what this is, for a person who types it in, with the way
// to their account and, for developers, discovery — rather than a protocol 404.
import Router from '@koa/router';
import type { WebDependencies } from './dependencies.ts';
import { PATHS } from './paths.ts';

export function homeRoutes(deps: Pick<WebDependencies, 'config' | 'views'>): Router {
  const router = new Router();
  // The same for everyone, and without a form: no CSRF cookie, and caches may keep it a while.
  const page = deps.views.render('home', { host: new URL(deps.config.issuer).host });
  router.get(PATHS.home, (ctx) => {
    ctx.type = 'html';
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.body = page;
  });
  return router;
}
