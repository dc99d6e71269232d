// The admin API under /admin/v1: JSON in and out, problem details for every error, limited per client address,
// and open only to the bearers of access tokens Gatehouse issued for it (authentication.ts). Its OpenAPI document
// (/admin/v1/openapi.json) is made from the operations' own declarations. No CORS unless ADMIN_API_CORS_ORIGINS
// names an admin console's origin: admin tools call it from their servers.
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { WebDependencies } from '../dependencies.ts';
import type { JwtAccessTokens } from '../../oidc/jwt-access-tokens.ts';
import type { ClientService } from '../../clients/clients.ts';
import { networkOf } from '../../limits/index.ts';
import { ADMIN_API_PATH, ADMIN_READ_SCOPE, ADMIN_WRITE_SCOPE, adminApiIdentifier } from '../../apis/admin-api.ts';
import { authenticateAdmin } from './authentication.ts';
import { openApiDocument, route, type Operation } from './operations.ts';
import { answerProblems, Problem } from './problems.ts';
import { userOperations } from './users.ts';
import { clientOperations } from './clients.ts';
import { settingsOperations, type AdminSettingsDependencies } from './settings.ts';

export type AdminApiDependencies = Pick<WebDependencies, 'config' | 'logger' | 'limits' | 'users' | 'flows' | 'accountSessions' | 'afterResponseWork' | 'engine'> & AdminSettingsDependencies & {
  jwtAccessTokens: Pick<JwtAccessTokens, 'verify' | 'isRevoked'>;
  clients: Pick<ClientService, 'find' | 'create' | 'record' | 'page' | 'update' | 'delete' | 'rotateSecret'>;
};

/** The admin API, as a middleware that answers every path under its prefix (and passes the others on). */
export function adminApi(deps: AdminApiDependencies): Middleware {
  const { config, limits } = deps;
  const operations = [...userOperations(deps), ...clientOperations(deps), ...settingsOperations(deps)];
  const document = openApiDocument(operations, {
    serverUrl: adminApiIdentifier(config.issuer), tokenUrl: `${config.issuer}/token`,
    scopes: { [ADMIN_READ_SCOPE]: 'Read', [ADMIN_WRITE_SCOPE]: 'Change' },
  });
  const authentication = { ...deps, audience: adminApiIdentifier(config.issuer) };

  const router = new Router({ prefix: ADMIN_API_PATH });
  router.get('/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = document;
  });
  route(router, operations, (ctx) => authenticateAdmin(ctx, authentication));
  const routes = router.routes();
  const problems = answerProblems(deps.logger);

  const allowedOrigins = new Set(config.adminApiCorsOrigins);

  return async (ctx, next) => {
    if (ctx.path !== ADMIN_API_PATH && !ctx.path.startsWith(`${ADMIN_API_PATH}/`)) return next();
    // Browsers on the origins configured may call it (an admin console); no other origin is answered.
    const origin = ctx.get('origin');
    if (origin && allowedOrigins.has(origin)) {
      ctx.vary('Origin');
      ctx.set('Access-Control-Allow-Origin', origin);
      ctx.set('Access-Control-Expose-Headers', 'ETag, Location, Retry-After, WWW-Authenticate');
      if (ctx.method === 'OPTIONS' && ctx.get('access-control-request-method')) {
        ctx.set('Access-Control-Allow-Methods', 'GET, POST, PUT, PATCH, DELETE');
        ctx.set('Access-Control-Allow-Headers', 'Authorization, Content-Type, If-Match');
        ctx.set('Access-Control-Max-Age', '600');
        ctx.status = 204;
        return;
      }
    }
    await problems(ctx, async () => {
      const decision = await limits.rates.consume('admin-api-ip', networkOf(ctx.ip));
      if (!decision.allowed) throw new Problem('too-many-requests', 'Too many requests from this address: wait and try again', { retryAfterSeconds: decision.retryAfterSeconds });
      await routes(ctx as never, async () => notAnOperation(ctx, operations));
    });
  };
}

/** Anything else under the prefix: 405 naming the methods a path has, or 404. */
function notAnOperation(ctx: Context, operations: readonly Operation[]): never {
  const known = operations.filter((operation) => new RegExp(`^${ADMIN_API_PATH}${operation.path.replace(/\{\w+\}/g, '[^/]+')}$`).test(ctx.path));
  if (known.length) {
    ctx.set('Allow', [...new Set(known.map((operation) => operation.method.toUpperCase()))].join(', '));
    throw new Problem('method-not-allowed', `${ctx.method} is not an operation of ${ctx.path}`);
  }
  throw new Problem('not-found', `Nothing is at ${ctx.path}`);
}
