// Composes the HTTP application: security headers, error mapping, health, assets, the interaction
// pages, and oidc-provider behind them for every protocol endpoint.
import Koa from 'koa';
import type { Runtime } from './runtime.ts';
import { securityHeaders } from './http/security-headers.ts';
import { canonicalOrigin } from './http/canonical-origin.ts';
import { errorPages } from './http/errors.ts';
import { healthRoutes } from './http/health.ts';
import { assetRoutes } from './http/assets.ts';
import { interactionRoutes } from './interactions/routes.ts';
import { emailVerificationRoutes } from './interactions/email-verification.ts';
import { accountConsoleRoutes } from './account-console/index.ts';
import { passwordResetRoutes } from './interactions/password-reset.ts';
import { emailChangeConfirmationRoutes } from './account-console/email.ts';
import { corsPreflights } from './http/cors-preflight.ts';

export function createApp(runtime: Runtime): Koa {
  const { config, provider, views, logger } = runtime;
  // Same keys as the engine's cookies, so cookies signed by one verify in the other.
  const app = new Koa({ keys: runtime.secrets.cookieSecrets, proxy: config.trustProxy, maxIpsCount: config.trustedProxyHops });
  app.silent = true;

  app.use(canonicalOrigin({ issuer: config.issuer, trustProxy: config.trustProxy }));
  app.use(securityHeaders({
    https: config.issuer.startsWith('https://'),
    // The authorization endpoint (and its resumption after login) may answer with response_mode=form_post.
    postsToClient: (path) => path === '/auth' || path.startsWith('/auth/'),
  }));
  app.use(errorPages(views, logger));
  for (const router of [healthRoutes({ database: runtime.database, store: runtime.store }), assetRoutes(), interactionRoutes(runtime), emailVerificationRoutes(runtime), accountConsoleRoutes(runtime), passwordResetRoutes(runtime), emailChangeConfirmationRoutes(runtime)]) {
    app.use(router.routes());
    app.use(router.allowedMethods());
  }
  // Everything else is a protocol endpoint; the engine answers its own errors in the protocol's format.
  app.use(corsPreflights({ provider, clients: runtime.clients }));
  const handleProtocol = provider.callback();
  app.use(async (ctx) => {
    ctx.respond = false;
    await handleProtocol(ctx.req, ctx.res);
  });
  return app;
}
