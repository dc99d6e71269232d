// Composes the HTTP application from the web tree (src/web/): its middleware, then health, assets, the home
// page, the interaction pages, the emailed links' pages and the account console, and oidc-provider behind them for
// every protocol endpoint. Each area is handed the runtime's services it declares it uses.
import Koa from 'koa';
import compose from 'koa-compose';
import type { Runtime } from './runtime.ts';
import { canonicalOrigin } from './web/middleware/canonical-origin.ts';
import { corsPreflights } from './web/middleware/cors-preflight.ts';
import { errorPages } from './web/middleware/error-pages.ts';
import { securityHeaders } from './web/middleware/security-headers.ts';
import { healthRoutes } from './web/health.ts';
import { homeRoutes } from './web/home.ts';
import { assetRoutes } from './web/assets.ts';
import { interactionRoutes } from './web/interaction/index.ts';
import { passwordResetRoutes } from './web/emailed-links/password-reset.ts';
import { emailVerificationRoutes } from './web/emailed-links/verify-email.ts';
import { emailChangeLinkRoutes } from './web/emailed-links/email-change.ts';
import { accountConsoleRoutes } from './web/account/index.ts';
import { adminApi } from './web/admin/index.ts';
import { metricsRoutes } from './web/metrics.ts';
import { requestLog } from './web/middleware/request-log.ts';
import { EngineRoutes, routeKey, routePaths } from './web/engine-paths.ts';
import { authorizationLimit, type LimitedPath } from './web/middleware/authorization-limit.ts';
import { engineOrGatehouse } from './web/middleware/engine-dispatch.ts';

/** `stopping`: whether the server is shutting down (serve.ts), which /readyz then tells the load balancer. */
export function createApp(runtime: Runtime, options: { stopping?: () => boolean } = {}): Koa {
  const { config, provider, views, logger } = runtime;
  // Same keys as the engine's cookies, so cookies signed by one verify in the other.
  const app = new Koa({ keys: runtime.secrets.cookieSecrets, proxy: config.trustProxy, maxIpsCount: config.trustedProxyHops });
  app.silent = true;

  const engine = new EngineRoutes(provider);
  app.use(requestLog(logger, runtime.metrics, engine));
  app.use(canonicalOrigin({ issuer: config.issuer, trustProxy: config.trustProxy }));
  app.use(securityHeaders({
    https: config.issuer.startsWith('https://'),
    // The authorization endpoint (and its resumption after login) may answer with response_mode=form_post.
    postsToClient: (path) => path === '/auth' || path.startsWith('/auth/'),
  }));
  app.use(errorPages(views, logger));
  const routers = [
    healthRoutes({ database: runtime.database, store: runtime.store }, options.stopping ?? (() => false)),
    // Without a token, /metrics is served on METRICS_PORT alone (see createMetricsApp).
    metricsRoutes(runtime.metrics, config.metrics.token ? { token: config.metrics.token } : 'not-served'),
    assetRoutes(),
    homeRoutes(runtime),
    interactionRoutes(runtime),
    passwordResetRoutes(runtime),
    emailVerificationRoutes(runtime),
    emailChangeLinkRoutes(runtime),
    accountConsoleRoutes(runtime),
  ];
  const gatehouseRoutes = compose([adminApi(runtime), ...routers.flatMap((router) => [router.routes(), router.allowedMethods()])] as Koa.Middleware[]);
  app.use(engineOrGatehouse(engine, gatehouseRoutes));
  const limited = (route: string, how: LimitedPath) => routePaths(provider, [route]).map((path) => [routeKey(path), how] as const);
  app.use(authorizationLimit(runtime.limits.rates, runtime.clients, new Map([
    ...limited('authorization', { action: 'signing in' }),
    ...limited('pushed_authorization_request', { action: 'signing in', calledByBrowserApps: true }),
    ...limited('end_session', { action: 'signing out' }),
  ])));
  // Everything else is a protocol endpoint; the engine answers its own errors in the protocol's format.
  app.use(corsPreflights({ provider, clients: runtime.clients }));
  // The engine is a Koa app itself: its middleware runs on this request's context (as koa-mount would run it),
  // rather than on a second context made for the same request by its own callback().
  const handleProtocol = compose(provider.middleware);
  app.use(async (ctx, next) => {
    try {
      await handleProtocol(ctx, next);
    } catch (error) {
      // An answer the engine could not finish (its session's save failed as it ended the request) loses what the
      // engine had set for it, as its own Koa app's error handling dropped it: a cookie naming a session never
      // saved would sign the browser out, and a redirect would go on without its answer.
      ctx.res.removeHeader('Set-Cookie');
      ctx.res.removeHeader('Location');
      throw error;
    }
  });
  return app;
}

/** The app of METRICS_PORT: /metrics alone, without a token (the port is for the scraper's network). */
export function createMetricsApp(runtime: Runtime): Koa {
  const app = new Koa();
  app.silent = true;
  const router = metricsRoutes(runtime.metrics, 'open');
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}
