// Serves the pages' stylesheet and script from views/assets (a fixed list, so no path ever reaches the disk), and an
// empty favicon.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Router from '@koa/router';
import { VIEWS_DIR } from './kit/views.ts';
import { PATHS, pathTo } from './paths.ts';

const ASSETS = { 'gatehouse.css': 'text/css; charset=utf-8', 'gatehouse.js': 'text/javascript; charset=utf-8' } as const;

export function assetRoutes(): Router {
  const router = new Router();
  for (const [name, type] of Object.entries(ASSETS)) {
    const content = readFileSync(path.join(VIEWS_DIR, 'assets', name));
    router.get(pathTo('asset', { name }), (ctx) => {
      ctx.type = type;
      ctx.set('Cache-Control', 'public, max-age=3600');
      ctx.body = content;
    });
  }
  router.get(PATHS.favicon, (ctx) => {
    ctx.status = 204;
    ctx.set('Cache-Control', 'public, max-age=86400');
  });
  return router;
}
